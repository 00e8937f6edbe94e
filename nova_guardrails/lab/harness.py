# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.
"""In-process nova for the lab and the functional tests.

Built on nova's own functional fixtures, shipped in the nova wheel:
``nova.tests.functional.libvirt.base.ServersTestBase`` gives sqlite
databases, the placement fixture, fake RPC, the Neutron/Glance fixtures and
the libvirt driver over nova's fakelibvirt. This module adds what the
guardrails scenarios need:

* nova.conf loaded from text, as nova-compute reads it (:meth:`use_nova_conf`),
  so the compute service loads ``guardrails.GuardrailsDriver`` through
  nova's own driver loader and the guards through stevedore;
* crashes (:class:`ComputeCrash`, a BaseException raised at a crash point,
  which nova's ``except Exception`` handlers do not catch, as with kill -9;
  ``finally`` blocks still run on its way out, but a resource claim is not
  aborted by it and the instance action event it was in stays unfinished);
* restart of a compute service keeping the hypervisor state (the fake
  libvirt connection and its domains).
"""

# First: eventlet's monkey patching before nova imports oslo.db (see the
# module).
from nova_guardrails.lab import greenthreads  # noqa: F401,H306  isort:skip

import configparser
import importlib.metadata
import inspect
import sys
import threading
import time

from unittest import mock

import fixtures
from nova.compute import power_state
import nova.conf
from nova import context as nova_context
from nova import objects
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional import integrated_helpers
from nova.tests.functional.libvirt import base
from nova.virt.libvirt import guest as libvirt_guest
from oslo_config import fixture as config_fixture
from oslo_utils.fixture import uuidsentinel as uuids

CONF = nova.conf.CONF

#: nova.conf of a nova-compute with nova-guardrails (README's snippet).
GUARDED_NOVA_CONF = """
[DEFAULT]
compute_driver = guardrails.GuardrailsDriver
[guardrails]
driver = libvirt.LibvirtDriver
enabled_guards = recovery_table, host_identity, revert_vif, rbd_root_disk
"""

#: nova.conf of the same nova-compute without nova-guardrails.
NOVA_ALONE_CONF = """
[DEFAULT]
compute_driver = libvirt.LibvirtDriver
"""


class ComputeCrash(BaseException):
    """nova-compute dies here.

    Derives from BaseException so that nova's ``except Exception`` handlers
    (reverts_task_state, wrap_instance_fault, ...) do not run, as with a
    kill -9.
    """


def api_paste_config():
    """Path of the api-paste.ini the nova wheel installed.

    The wheel installs it at ``<prefix>/etc/nova/api-paste.ini``; nova's
    functional fixtures look under site-packages unless told.
    """
    for path in importlib.metadata.files('nova') or ():
        if str(path).replace('\\', '/').endswith('etc/nova/api-paste.ini'):
            return str(path.locate())
    raise RuntimeError('nova\'s api-paste.ini is not installed')


#: nova >= 30's _wait_for_server_parameter can wait for an ERROR server's
#: fault to be recorded too; nova 29's cannot.
_WAITS_FOR_FAULT_KEY = 'wait_for_fault_key' in inspect.signature(
    integrated_helpers.InstanceHelperMixin._wait_for_server_parameter
).parameters


class GuardrailsTestBase(base.ServersTestBase,
                         integrated_helpers.InstanceHelperMixin):
    """Functional base: real nova, configured from nova.conf text.

    Subclasses set :attr:`NOVA_CONF` (or call :meth:`use_nova_conf` before
    :meth:`start_compute`).
    """

    microversion = 'latest'
    ADMIN_API = True
    #: Real casts: a crash in the compute must not travel back through the
    #: API request as it would with casts turned into calls.
    CAST_AS_CALL = False
    #: nova.conf text applied in setUp.
    NOVA_CONF = GUARDED_NOVA_CONF

    #: Polls of nova's ``_wait_for_server_parameter`` (0.5 s apart) at
    #: least: nova's default of 10 (5 s) is too short on a loaded 2-core CI
    #: machine; a state that never comes still fails, after 30 s.
    MIN_STATE_POLLS = 60

    def setUp(self):
        self.state_path = None
        self._nova_conf_fixture = None
        super().setUp()

    def _wait_for_server_parameter(self, server, expected_params,
                                   max_retries=10, api=None,
                                   wait_for_fault_key=True):
        kwargs = {'api': api}
        if _WAITS_FOR_FAULT_KEY:
            kwargs['wait_for_fault_key'] = wait_for_fault_key
        return super()._wait_for_server_parameter(
            server, expected_params,
            max(max_retries, self.MIN_STATE_POLLS), **kwargs)

    def _wait_for_state_change(self, server, expected_status, max_retries=10,
                               wait_for_fault_key=True):
        # nova 29's has no wait_for_fault_key (it never waits for the fault).
        return self._wait_for_server_parameter(
            server, {'status': expected_status}, max_retries,
            wait_for_fault_key=wait_for_fault_key)

    def _setup_services(self):
        # Runs inside _IntegratedTestBase.setUp, before any service starts.
        # fakelibvirt's managedSave leaves the domain's state RUNNING; real
        # libvirt shuts it off (VIR_DOMAIN_SHUTOFF, reason saved), which is
        # what a suspended guest looks like to nova after a restart.
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.managedSave',
            _managed_save_shuts_off))
        # A kill -9 runs no context-manager exit. Two exits nova's code
        # passes through would write to the database as ComputeCrash goes
        # by: a resource claim's abort (it unsets the instance's host and
        # node) and wrap_instance_event's EventReporter (it records the
        # instance action event finished). Neither runs for ComputeCrash.
        for target in ('nova.compute.claims.NopClaim.__exit__',
                       'nova.compute.utils.EventReporter.__exit__'):
            self.useFixture(fixtures.MonkeyPatch(
                target, _unless_killed(resolve(*target.rsplit('.', 1)))))
        # fakelibvirt's undefineFlags calls managedSaveRemove() without the
        # flags its own signature requires (reached once a saved image
        # exists, as above).
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.managedSaveRemove',
            _managed_save_remove))
        # nova-compute has no database: every read or write of the guards
        # must go through nova's objects (nova-conductor on a real node).
        self.db_access = self.useFixture(NoDirectDatabaseAccess())
        self.state_path = self.useFixture(fixtures.TempDir()).path
        self.flags(state_path=self.state_path)
        self.flags(api_paste_config=api_paste_config(), group='wsgi')
        self.use_nova_conf(self.NOVA_CONF)
        super()._setup_services()

    def _clear_attrs(self):
        # nova's TestCase deletes public instance attributes at cleanup;
        # pytest binds the test method as one and removes it itself.
        method = self.__dict__.pop(self._testMethodName, None)
        super()._clear_attrs()
        if method is not None:
            self.__dict__[self._testMethodName] = method

    def _setup_compute_service(self):
        # ServersTestBase forces compute_driver with an override here; the
        # driver comes from NOVA_CONF instead.
        pass

    def use_nova_conf(self, text):
        """Load nova.conf ``text`` the way nova-compute reads its file.

        Values are raw strings parsed by oslo.config's option types, as
        when read from a file; a later call wins over an earlier one.
        """
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str
        parser.read_string(text)
        # One fixture, made by the first call (in _setup_services, before
        # any service starts): its clean-up resets every option to its
        # default (ConfigOpts.reset), which must come after the services
        # stopped. A second fixture's clean-up ran first and reset nova's
        # test value manager_shutdown_timeout = 0: nova 33's Service.stop()
        # then waited its default (160 s) for the crashed service's task.
        # (nova's own regression test classes call this method too.)
        if getattr(self, '_nova_conf_fixture', None) is None:
            self._nova_conf_fixture = self.useFixture(
                config_fixture.Config(CONF))
        conf_fixture = self._nova_conf_fixture
        for section in ['DEFAULT'] + parser.sections():
            values = {k: v for k, v in parser.items(section)
                      if section == 'DEFAULT' or
                      k not in parser.defaults()}
            if values:
                conf_fixture.load_raw_values(group=section, **values)

    # Crashes -----------------------------------------------------------

    def crash_at(self, target, name, when='after', condition=None):
        """Make ``target.name`` a crash point for the next call.

        :param target: import path of the class (or module) that owns
            ``name``, e.g. ``'nova.tests.fixtures.libvirt.Domain'``.
        :param when: ``'after'`` (run the original, then crash) or
            ``'before'``.
        :param condition: optional ``f(*args, **kwargs) -> bool``; calls
            for which it is false pass through.
        :returns: a ``threading.Event`` set when the crash happened.
        """
        crashed = threading.Event()
        original = resolve(target, name)

        def crash_point(*args, **kwargs):
            if crashed.is_set() or (condition and
                                    not condition(*args, **kwargs)):
                return original(*args, **kwargs)
            if when == 'after':
                original(*args, **kwargs)
            crashed.set()
            raise ComputeCrash('crash at %s.%s (%s)' % (target, name, when))

        self.useFixture(fixtures.MonkeyPatch('%s.%s' % (target, name),
                                             crash_point))
        return crashed

    def crash_at_task_state(self, task_state, when='before'):
        """Crash when the compute saves an instance with ``task_state``.

        ``'before'``: the database keeps the previous task_state;
        ``'after'``: the database has ``task_state``.
        """
        def condition(instance, *args, **kwargs):
            return ('task_state' in instance.obj_what_changed() and
                    instance.task_state == task_state)
        return self.crash_at('nova.objects.instance.Instance', 'save',
                             when=when, condition=condition)

    def spy(self, target, name, record):
        """Call ``record(*args, **kwargs)`` on every call of target.name,
        then the original: a recording pass-through, not a mock.
        """
        original = resolve(target, name)

        def spied(*args, **kwargs):
            record(*args, **kwargs)
            return original(*args, **kwargs)
        self.useFixture(fixtures.MonkeyPatch('%s.%s' % (target, name),
                                             spied))

    def wait_for_crash(self, crashed, timeout=30):
        if not crashed.wait(timeout):
            self.fail('the crash point was not reached in %ss' % timeout)

    # Services -------------------------------------------------------------

    def stop_compute(self, hostname):
        """Stop nova-compute ``hostname``; its hypervisor (the fake libvirt
        connection and its domains) is returned, to start a service on it
        again with :meth:`start_compute_on`.
        """
        compute = self.computes.pop(hostname)
        self.compute_rp_uuids.pop(hostname, None)
        connection = compute.manager.driver._host.get_connection()
        compute.stop()
        return connection

    def start_compute_on(self, hostname, connection):
        """Start nova-compute ``hostname`` over an existing hypervisor.

        Like ``ServersTestBase.start_compute(connection=...)``, without its
        look-up of a placement provider named ``hostname``: a service over
        another host's hypervisor registers under that hypervisor's name.
        The node uuid is the one ``start_compute`` gives ``hostname``.
        """
        self.assertNotIn(hostname, self.computes)
        saved = self.mock_conn.return_value
        self.mock_conn.return_value = connection
        try:
            with mock.patch('nova.virt.node.get_local_node_uuid',
                            autospec=True, return_value=str(getattr(
                                uuids, 'node_%s' % hostname))):
                compute = self.start_service('compute', host=hostname)
                compute.driver._host.get_connection = lambda: connection
                compute.driver._host.get_node_uuid()
        finally:
            self.mock_conn.return_value = saved
        self.computes[hostname] = compute
        return compute

    def compute_nodes(self, hypervisor_hostname=None):
        """Non-deleted compute node records, optionally of one hypervisor."""
        ctxt = nova_context.get_admin_context()
        return [cn for cn in objects.ComputeNodeList.get_all(ctxt)
                if hypervisor_hostname in (None, cn.hypervisor_hostname)]

    # Hypervisor ----------------------------------------------------------

    def domain(self, hostname, server):
        """The fakelibvirt domain of ``server`` on ``hostname``, or None."""
        conn = self.computes[hostname].driver._host.get_connection()
        try:
            return conn.lookupByUUIDString(server['id'])
        except fakelibvirt.libvirtError:
            return None

    def guest_power_state(self, hostname, server):
        """Power state name of the guest on the hypervisor."""
        return self.guest_power_state_on(
            self.computes[hostname].driver._host.get_connection(), server)

    @staticmethod
    def guest_power_state_on(conn, server):
        """Power state name of the guest on fake libvirt connection conn."""
        try:
            dom = conn.lookupByUUIDString(server['id'])
        except fakelibvirt.libvirtError:
            dom = None
        if dom is None:
            return power_state.STATE_MAP[power_state.NOSTATE]
        return power_state.STATE_MAP[
            libvirt_guest.LIBVIRT_POWER_STATE[dom.info()[0]]]

    def instance(self, server):
        """The instance record, read from the cell database."""
        ctxt = nova_context.get_admin_context()
        return objects.Instance.get_by_uuid(ctxt, server['id'])

    def server_states(self, server):
        """``(vm_state, task_state, power_state name)`` from the API."""
        server = self.api.get_server(server['id'])
        return (server['OS-EXT-STS:vm_state'],
                server['OS-EXT-STS:task_state'],
                power_state.STATE_MAP.get(
                    server['OS-EXT-STS:power_state']))

    def assertGuardrailsDecision(self, decision, action):
        """``decision`` (a start-up report row) is ``action``, run by
        nova-guardrails, done.
        """
        self.assertIsNotNone(decision, 'no start-up report row')
        self.assertEqual((action, 'guardrails', 'done'),
                         (decision['action'], decision['executed_by'],
                          decision['outcome']), decision)

    def wait_until(self, predicate, timeout=30, interval=0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(interval)
        self.fail('condition not met in %ss' % timeout)


class NoDirectDatabaseAccess(fixtures.Fixture):
    """Fails the test when code of nova-guardrails that runs inside
    nova-compute reaches nova's database other than through nova's objects.

    On a compute node ``nova.cmd.compute`` sets
    ``nova.db.main.api.DISABLE_DB_ACCESS`` and points the objects'
    indirection API at nova-conductor; in nova's in-process fixtures every
    service shares one database, so a direct read would pass here and fail
    on every real node. Every database context manager nova hands out
    (``nova.db.main.api.get_context_manager``, used by nova's own DB API
    and by anyone opening a session) looks at its caller's stack: a frame of
    ``nova_guardrails`` reached before any frame of ``nova/objects`` or
    ``oslo_versionedobjects`` is a direct access. Operator tools that run
    elsewhere (``nova_guardrails.audit``, ``.cmd``, ``.lab``,
    ``.rbd_trash``) are exempt.
    """

    EXEMPT = ('nova_guardrails/audit.py', 'nova_guardrails/cmd/',
              'nova_guardrails/lab/', 'nova_guardrails/rbd_trash.py')

    #: Frames of nova's own services: a database call made under one of
    #: them (nearer to the call than any frame of nova-guardrails) is
    #: nova's own work, even when a guard wrapper called into it.
    NOVA_WORK = ('/nova/compute/', '/nova/virt/', '/nova/network/',
                 '/nova/conductor/', '/nova/scheduler/', '/nova/api/',
                 '/nova/service.py', '/nova/manager.py')

    def _setUp(self):
        from nova.db.main import api as main_db_api
        self.violations = []
        #: Remotable calls of nova's objects made by guard code (on a
        #: compute node each is a round trip to nova-conductor), not by
        #: nova's own code the guards call into.
        self.guard_calls = 0
        self.guard_call_sites = []
        self._last_call = None
        original = main_db_api.get_context_manager

        def get_context_manager(context):
            frame = sys._getframe(1)
            self._check(frame)
            self._count(frame)
            return original(context)
        self.useFixture(fixtures.MonkeyPatch(
            'nova.db.main.api.get_context_manager', get_context_manager))
        self.addCleanup(self._assert_none)

    def _check(self, frame):
        while frame is not None:
            path = frame.f_code.co_filename.replace('\\', '/')
            if '/nova/objects/' in path or '/oslo_versionedobjects/' in path:
                return
            if '/nova_guardrails/' in path:
                if not any(e in path for e in self.EXEMPT):
                    self.violations.append('%s:%d %s' % (
                        path, frame.f_lineno, frame.f_code.co_name))
                return
            frame = frame.f_back

    def _count(self, frame):
        """Count one round trip per remotable call of guard code: the
        database calls made inside one call of a remotable method (the
        outermost ``oslo_versionedobjects`` wrapper frame under the guard's
        frame) are one round trip to nova-conductor on a compute node.
        """
        remotable = None
        while frame is not None:
            path = frame.f_code.co_filename.replace('\\', '/')
            if path.endswith('/oslo_versionedobjects/base.py') and \
                    frame.f_code.co_name == 'wrapper':
                remotable = frame
            elif '/nova_guardrails/' in path:
                if any(e in path for e in self.EXEMPT):
                    return
                if remotable is not None and remotable is self._last_call:
                    return
                self._last_call = remotable
                self.guard_calls += 1
                self.guard_call_sites.append('%s:%d %s' % (
                    path.rsplit('/nova_guardrails/', 1)[-1],
                    frame.f_lineno, frame.f_code.co_name))
                return
            elif any(part in path for part in self.NOVA_WORK):
                return
            frame = frame.f_back

    def _assert_none(self):
        if self.violations:
            raise AssertionError(
                'nova-guardrails reached the database directly from inside '
                'nova-compute (a compute node has no database): %s'
                % '; '.join(sorted(set(self.violations))))


def _managed_save_shuts_off(domain, flags):
    domain._state = fakelibvirt.VIR_DOMAIN_SHUTOFF
    domain._connection._mark_not_running(domain)
    domain._has_saved_state = True


def _unless_killed(exit_):
    """A context manager's ``__exit__`` that does nothing for ComputeCrash
    (the exception propagates).
    """
    def exit_unless_killed(self, exc_type, exc_val, exc_tb):
        if exc_type is not None and issubclass(exc_type, ComputeCrash):
            return False
        return exit_(self, exc_type, exc_val, exc_tb)
    return exit_unless_killed


def _managed_save_remove(domain, flags=0):
    domain._has_saved_state = False


def resolve(target, name):
    """The attribute ``name`` of the object at the dotted path ``target``.

    ``target`` is a module path followed by attribute names
    (``'nova.virt.libvirt.driver.LibvirtDriver'``): the longest importable
    prefix is imported, then the rest looked up on it; what
    :meth:`GuardrailsTestBase.crash_at` and :meth:`GuardrailsTestBase.spy`
    patch, and what a test keeps to call the original.

    :raises ImportError: no prefix of ``target`` is a module.
    :raises AttributeError: ``target`` or ``name`` does not exist there.
    """
    parts = target.split('.')
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return getattr(obj, name)
    raise ImportError(target)


class NeutronAgents(fixtures.Fixture):
    """What neutron's agents do with a plugged vif, for NeutronFixture.

    nova's NeutronFixture never sends events (it sets vif_plugging_timeout
    to 0). Here, when the libvirt driver plugs the vifs of an instance on a
    host, each port bound to that host goes ACTIVE and neutron sends
    network-vif-plugged to nova's API; a port bound to another host gets
    nothing (the agent there owns it), as in nova bug 1450624. ``lose`` binding
    updates are acknowledged but not applied (a lost or raced update);
    with ``refuse`` set, binding updates fail.
    """

    def __init__(self, test):
        super().__init__()
        self.test = test
        self.lose = 0
        self.refuse = False
        self.sent = []

    def _setUp(self):
        test = self.test
        neutron = test.neutron
        original_update = neutron.update_port

        def update_port(port_id, body):
            changes = body.get('port', {})
            if 'binding:host_id' in changes:
                if self.lose:
                    self.lose -= 1
                    return {'port': neutron.show_port(port_id)['port']}
                if self.refuse:
                    from neutronclient.common import exceptions
                    raise exceptions.Conflict(
                        'binding of port %s cannot change' % port_id)
            return original_update(port_id, body)
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.neutron.NeutronFixture.update_port',
            lambda fixture_self, port_id, body=None: update_port(
                port_id, body or {})))

        def plugged(driver, instance, network_info):
            host = driver._host.get_connection().getHostname()
            events = []
            for vif in network_info:
                port = neutron.show_port(vif['id'])['port']
                if port.get('binding:host_id') == host:
                    neutron._ports[vif['id']]['status'] = 'ACTIVE'
                    events.append({'name': 'network-vif-plugged',
                                   'server_uuid': instance.uuid,
                                   'tag': vif['id'],
                                   'status': 'completed'})
            if events:
                self.sent.extend(events)
                test.admin_api.create_server_external_events(events=events)
        original_plug = resolve('nova.virt.libvirt.driver.LibvirtDriver',
                                'plug_vifs')

        def plug_vifs(driver, instance, network_info):
            result = original_plug(driver, instance, network_info)
            plugged(driver, instance, network_info)
            return result
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.plug_vifs', plug_vifs))
