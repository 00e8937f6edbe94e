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
"""The crash matrix: every lifecycle operation crashed at every step.

For each :class:`Operation` (boot, reboots, stop/start, pause, suspend,
rescue, snapshot, backup, rebuild, resize, migrations, evacuation, shelve,
delete, soft delete, restore, set admin password) the matrix

1. runs the operation once on real nova (the functional fixtures, libvirt
   driver over fakelibvirt) and *traces* its crash points: every task_state
   transition a nova-compute saves (:data:`TASK_STATE`), and every
   hypervisor side effect (:data:`HYPERVISOR`: a fakelibvirt call that
   defines, starts, stops, saves or removes a guest), each with the host it
   happened on and its occurrence number;
2. for each crash point, runs the operation again from scratch and kills the
   nova-compute of that host right after it (a
   :class:`~nova_guardrails.lab.harness.ComputeCrash`, a BaseException that
   nova's ``except Exception`` handlers do not catch, as with kill -9);
3. restarts that nova-compute keeping the hypervisor state, lets the system
   settle (the queued grace period included), and checks the invariants of
   :func:`evaluate`.

Each cell (operation x crash point) is ``recovered``, ``error`` (stable:
vm_state error, task_state None; an operator's hard reboot or rebuild
applies), ``stuck`` or ``lost`` (with the invariant that failed); the same
matrix runs with nova alone and with nova-guardrails. ``nova-guardrails
crash-matrix`` writes ``crash-matrix.md`` and a JSON file.
"""

import dataclasses
import datetime
import inspect
import json
import threading
import time

import fixtures

#: Crash point kinds.
TASK_STATE = 'task_state'
HYPERVISOR = 'hypervisor'
#: Not a crash: the operation's request is cast while its nova-compute is
#: down (held in the queue across a restart) and delivered after the
#: queued grace period, when the recovery has already decided the instance.
LATE = 'late delivery'

FAKELIBVIRT = 'nova.tests.fixtures.libvirt'
#: fakelibvirt calls that change a guest on the hypervisor.
DOMAIN_EFFECTS = ('createWithFlags', 'destroy', 'shutdown', 'suspend',
                  'resume', 'managedSave', 'reset', 'undefine',
                  'undefineFlags', 'snapshotCreateXML')
CONNECTION_EFFECTS = ('defineXML', 'createXML')

#: Verdicts.
RECOVERED, ERROR, STUCK, LOST = 'recovered', 'error', 'stuck', 'lost'
VERDICTS = (RECOVERED, ERROR, STUCK, LOST)
#: A cell whose crash point was not reached in its run: it proves nothing
#: and is counted under no verdict.
NOT_REACHED = 'not reached'


#: vm_states whose instance has a guest defined on its host.
NEEDS_GUEST = ('active', 'stopped', 'paused', 'suspended', 'rescued',
               'resized', 'shelved')


@dataclasses.dataclass(frozen=True)
class CrashPoint:
    """Where nova-compute dies: right after the ``occurrence``-th (from 1)
    ``kind``/``name`` event on ``host`` during the operation.
    """

    kind: str
    name: str
    host: str
    occurrence: int

    def label(self):
        if self.kind == LATE:
            return 'request queued across a restart of %s, delivered ' \
                'late' % self.host
        what = ('task_state -> %s' % (self.name or 'None')
                if self.kind == TASK_STATE else 'after %s' % self.name)
        suffix = ' #%d' % self.occurrence if self.occurrence > 1 else ''
        return '%s on %s%s' % (what, self.host, suffix)


@dataclasses.dataclass
class Operation:
    """A lifecycle operation of the matrix.

    :ivar name: identifier (``--ops``).
    :ivar prepare: ``f(test) -> server``: computes started, a server in the
        state the operation starts from.
    :ivar steps: ``[(f(test, server), done(test, server) -> bool)]``: the
        API requests of the operation, each with its completion condition.
    :ivar deletes: the operation deletes the server (its guest and disks
        may go).
    :ivar conf: extra nova.conf text, with its section headers.
    :ivar revive: hosts whose nova-compute starts again at the end of the
        story (an evacuation's source, repaired), before the invariants.
    :ivar queueable: its one request is a cast to the server's host that
        may wait in the queue while that nova-compute is down: the matrix
        adds a :data:`LATE` cell.
    """

    name: str
    prepare: object
    steps: list
    deletes: bool = False
    conf: str = ''
    revive: tuple = ()
    queueable: bool = False


@dataclasses.dataclass
class Cell:
    """One run: an operation crashed at one point, one configuration."""

    operation: str
    point: str
    guarded: bool
    verdict: str
    failed: list
    state: dict
    crashed: bool

    def as_dict(self):
        return dataclasses.asdict(self)


# Tracing and crashing -------------------------------------------------------

def _compute_host_of_caller():
    """The host of the ComputeManager on the stack, or None (nova-api,
    conductor or the test itself).
    """
    from nova.compute import manager as compute_manager
    frame = inspect.currentframe()
    try:
        while frame is not None:
            candidate = frame.f_locals.get('self')
            if isinstance(candidate, compute_manager.ComputeManager):
                return candidate.host
            frame = frame.f_back
    finally:
        del frame
    return None


class Tracer(fixtures.Fixture):
    """Records crash points, or crashes at one.

    :param test: the GuardrailsTestBase.
    :param target: a :class:`CrashPoint` to crash at, or None to record.
    """

    def __init__(self, test, target=None):
        super().__init__()
        self.test = test
        self.target = target
        self.points = []
        self.counts = {}
        self.armed = False
        self.crashed = threading.Event()
        self.lock = threading.Lock()
        self._quiet = threading.local()
        self.deferred_to = None

    def quiet(self):
        """A context in which this thread's side effects are not events."""
        tracer = self

        class Quiet:
            def __enter__(self):
                tracer._quiet.on = True

            def __exit__(self, *args):
                tracer._quiet.on = False
        return Quiet()

    def _host_of_connection(self, connection):
        for host, compute in list(self.test.computes.items()):
            if compute.driver._host.get_connection() is connection:
                return host
        return getattr(connection, '_guardrails_host', None)

    def _event(self, kind, name, host, defer=False):
        """Count the event; crash if it is the target.

        :param defer: the event happens in a thread nova waits on without a
            timeout (the live migration's operation thread): killing that
            thread alone would hang the service, where a kill -9 takes the
            whole process. The crash is raised at the next event of the
            same host instead, in whichever thread makes it.
        """
        if not self.armed or host is None or getattr(self._quiet, 'on',
                                                     False):
            return
        with self.lock:
            if self.deferred_to == host and not self.crashed.is_set():
                self.crashed.set()
                deferred = True
            else:
                deferred = False
                key = (kind, name, host)
                self.counts[key] = self.counts.get(key, 0) + 1
                point = CrashPoint(kind, name, host, self.counts[key])
                if self.target is None:
                    self.points.append(point)
                    return
                if point != self.target or self.crashed.is_set():
                    return
                if defer:
                    self.deferred_to = host
                    return
                self.crashed.set()
        if deferred:
            point = self.target
        from nova_guardrails.lab import harness
        raise harness.ComputeCrash('crash at %s' % point.label())

    def _setUp(self):
        from nova.objects import instance as instance_obj
        tracer = self
        save = instance_obj.Instance.save

        def traced_save(instance, *args, **kwargs):
            changed = 'task_state' in instance.obj_what_changed()
            new = instance.task_state if changed else None
            save(instance, *args, **kwargs)
            if changed:
                tracer._event(TASK_STATE, new, _compute_host_of_caller())
        self.useFixture(fixtures.MonkeyPatch(
            'nova.objects.instance.Instance.save', traced_save))

        def wrap(cls_name, method, host_of):
            original = getattr(getattr(_fakelibvirt(), cls_name), method)

            def effect(obj, *args, **kwargs):
                result = original(obj, *args, **kwargs)
                # The nova-compute whose thread made the call dies (a live
                # migration's source creates the guest on the destination).
                tracer._event(HYPERVISOR, method,
                              _compute_host_of_caller() or host_of(obj))
                return result
            self.useFixture(fixtures.MonkeyPatch(
                '%s.%s.%s' % (FAKELIBVIRT, cls_name, method), effect))
        for method in DOMAIN_EFFECTS:
            wrap('Domain', method,
                 lambda dom: self._host_of_connection(dom._connection))
        for method in CONNECTION_EFFECTS:
            wrap('Connection', method, self._host_of_connection)


def _fakelibvirt():
    from nova.tests.fixtures import libvirt as fakelibvirt
    return fakelibvirt


# Operations -----------------------------------------------------------------

H1, H2 = 'compute1', 'compute2'


def _status(*statuses):
    def done(test, server):
        return test.api.get_server(server['id'])['status'] in statuses
    return done


def _gone(test, server):
    from nova.tests.functional.api import client
    try:
        test.api.get_server(server['id'])
    except client.OpenStackApiNotFoundException:
        return True
    return False


def _action(body):
    def request(test, server):
        test.api.post_server_action(server['id'], body)
    return request


def _instance_dirs(test):
    # nova's fake image backend writes no files, so the instance directory
    # the libvirt driver's rescue writes unrescue.xml into does not exist:
    # create it, as the real image backend does when it creates disks.
    from nova.virt.libvirt import driver as libvirt_driver
    from nova.virt.libvirt import utils as libvirt_utils
    import os
    rescue = libvirt_driver.LibvirtDriver.rescue

    def rescue_with_dir(driver, context, instance, *args, **kwargs):
        os.makedirs(libvirt_utils.get_instance_path(instance), exist_ok=True)
        return rescue(driver, context, instance, *args, **kwargs)
    test.useFixture(fixtures.MonkeyPatch(
        'nova.virt.libvirt.driver.LibvirtDriver.rescue', rescue_with_dir))


def _in_background(request):
    """A request nova-api makes as an RPC *call* to the compute: a crashed
    compute never answers, so it is sent from a thread of its own and its
    error (a MessagingTimeout after rpc_response_timeout) ignored.
    """
    def run(test, server):
        def send():
            try:
                request(test, server)
            except Exception:
                pass
        threading.Thread(target=send, daemon=True).start()
    return run


def _one_host(test):
    _instance_dirs(test)
    test.start_compute(H1)
    return test._create_server(networks='none', host=H1)


AGENT_IMAGE = 'c0ffee00-0000-4000-8000-00000000a6e7'


def _agent_server(test):
    # set_admin_password needs the QEMU guest agent (image property).
    import copy
    from nova.tests.fixtures import glance
    image = copy.deepcopy(glance.GlanceFixture.image1)
    image.update(id=AGENT_IMAGE, name='with-guest-agent')
    image['properties'] = dict(image['properties'],
                               hw_qemu_guest_agent='yes')
    test.glance.create(None, image)
    test.start_compute(H1)
    return test._create_server(networks='none', host=H1,
                               image_uuid=AGENT_IMAGE)


def _two_hosts(test):
    from nova_guardrails.lab import scenarios
    _instance_dirs(test)
    scenarios._fake_disk_migration(test)
    test.flags(allow_resize_to_same_host=False)
    test.start_compute(H1)
    test.start_compute(H2)
    _live_migration_stub(test)
    return test._create_server(networks='none', host=H1)


def _live_migration_stub(test):
    # fakelibvirt's migrateToURI3 always fails; nova's own functional tests
    # (LibvirtMigrationMixin) stub it. Here it does what libvirtd does, as
    # one hypervisor side effect (libvirtd, not nova-compute, runs the
    # migration, so a dying nova-compute does not stop it half-way): the
    # guest runs on the destination, the source's domain stops, its job
    # completes.
    def migrate(domain, destination, params, flags):
        tracer = getattr(test, 'matrix_tracer', None)
        with tracer.quiet() if tracer else _nothing():
            source = domain._connection
            for host, compute in test.computes.items():
                conn = compute.driver._host.get_connection()
                if conn is not source:
                    conn.createXML(params['destination_xml'], 0)
                    break
            domain.destroy()
            domain.complete_job()
        if tracer:
            # nova runs the migration in a thread of its own: the source.
            tracer._event(HYPERVISOR, 'migrateToURI3',
                          _compute_host_of_caller() or
                          tracer._host_of_connection(domain._connection),
                          defer=True)
    test.useFixture(fixtures.MonkeyPatch(
        FAKELIBVIRT + '.Domain.migrateToURI3', migrate))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


def _then(prepare, *requests):
    """prepare, then the given (request, done) steps, waiting for each."""
    def run(test):
        server = prepare(test)
        for request, done in requests:
            request(test, server)
            test.wait_until(lambda: done(test, server), timeout=30)
        return server
    return run


def _stopped(test):
    return _then(_one_host, (_action({'os-stop': None}),
                             _status('SHUTOFF')))(test)


def _boot_prepare(test):
    test.start_compute(H1)
    return None


def _boot_request(test, server):
    created = test.api.post_server(
        {'server': test._build_server(networks='none')})
    server.update(created)


def _evacuation_prepare(test):
    server = _two_hosts(test)
    # The source host dies: its nova-compute and its guests with it.
    conn = test.computes[H1].driver._host.get_connection()
    conn._guardrails_host = H1
    test.computes[H1].stop()
    conn.lookupByUUIDString(server['id']).destroy()
    test.admin_api.put_service_force_down(
        test.admin_api.get_services(binary='nova-compute',
                                    host=H1)[0]['id'], True)
    return server


def _snapshot_done(test, server):
    return test.api.get_server(server['id'])['OS-EXT-STS:task_state'] is None


IMAGE = '155d900f-4e14-4e4c-a73d-069cbf4541e6'

OPERATIONS = [
    Operation('boot', _boot_prepare,
              [(_boot_request, _status('ACTIVE'))]),
    Operation('soft_reboot', _one_host,
              [(_action({'reboot': {'type': 'SOFT'}}), _status('ACTIVE'))],
              queueable=True),
    Operation('hard_reboot', _one_host,
              [(_action({'reboot': {'type': 'HARD'}}), _status('ACTIVE'))],
              queueable=True),
    Operation('stop', _one_host,
              [(_action({'os-stop': None}), _status('SHUTOFF'))],
              queueable=True),
    Operation('start', _stopped,
              [(_action({'os-start': None}), _status('ACTIVE'))],
              queueable=True),
    Operation('pause', _one_host,
              [(_action({'pause': None}), _status('PAUSED'))],
              queueable=True),
    Operation('unpause',
              _then(_one_host, (_action({'pause': None}),
                                _status('PAUSED'))),
              [(_action({'unpause': None}), _status('ACTIVE'))],
              queueable=True),
    Operation('suspend', _one_host,
              [(_action({'suspend': None}), _status('SUSPENDED'))],
              queueable=True),
    Operation('resume',
              _then(_one_host, (_action({'suspend': None}),
                                _status('SUSPENDED'))),
              [(_action({'resume': None}), _status('ACTIVE'))],
              queueable=True),
    Operation('rescue', _one_host,
              [(_action({'rescue': None}), _status('RESCUE'))],
              queueable=True),
    Operation('unrescue',
              _then(_one_host, (_action({'rescue': None}),
                                _status('RESCUE'))),
              [(_action({'unrescue': None}), _status('ACTIVE'))],
              queueable=True),
    Operation('snapshot', _one_host,
              [(_action({'createImage': {'name': 'snap'}}),
                _snapshot_done)],
              conf='[workarounds]\ndisable_libvirt_livesnapshot = true\n'),
    Operation('backup', _one_host,
              [(_action({'createBackup': {'name': 'bak',
                                          'backup_type': 'daily',
                                          'rotation': 1}}),
                _snapshot_done)],
              queueable=True),
    Operation('rebuild', _one_host,
              [(_action({'rebuild': {'imageRef': IMAGE}}),
                _status('ACTIVE'))]),
    Operation('resize_confirm', _two_hosts,
              [(_action({'resize': {'flavorRef': '2'}}),
                _status('VERIFY_RESIZE')),
               (_action({'confirmResize': None}), _status('ACTIVE'))]),
    Operation('resize_revert', _two_hosts,
              [(_action({'resize': {'flavorRef': '2'}}),
                _status('VERIFY_RESIZE')),
               (_action({'revertResize': None}), _status('ACTIVE'))]),
    Operation('cold_migrate', _two_hosts,
              [(_action({'migrate': None}), _status('VERIFY_RESIZE')),
               (_action({'confirmResize': None}), _status('ACTIVE'))]),
    Operation('live_migrate', _two_hosts,
              [(_action({'os-migrateLive': {'host': H2,
                                            'block_migration': 'auto'}}),
                lambda test, server: test.api.get_server(server['id'])[
                    'OS-EXT-SRV-ATTR:host'] == H2 and
                _status('ACTIVE')(test, server))],
              # The crashed source's post-live-migration call waits
              # long_rpc_timeout (1800 s) for an answer; nova's test fixture
              # makes executor teardown wait for it.
              conf='[DEFAULT]\nrpc_response_timeout = 5\n'
                   'long_rpc_timeout = 5\n'),
    Operation('evacuate', _evacuation_prepare,
              [(_action({'evacuate': {}}),
                lambda test, server: test.api.get_server(server['id'])[
                    'OS-EXT-SRV-ATTR:host'] == H2 and
                _status('ACTIVE', 'SHUTOFF')(test, server))],
              revive=(H1,)),
    Operation('shelve', _one_host,
              [(_action({'shelve': None}), _status('SHELVED'))],
              conf='[DEFAULT]\nshelved_offload_time = -1\n',
              queueable=True),
    Operation('shelve_offload',
              _then(_one_host, (_action({'shelve': None}),
                                _status('SHELVED'))),
              [(_action({'shelveOffload': None}),
                _status('SHELVED_OFFLOADED'))],
              conf='[DEFAULT]\nshelved_offload_time = -1\n'),
    Operation('unshelve',
              _then(_one_host, (_action({'shelve': None}),
                                _status('SHELVED_OFFLOADED'))),
              [(_action({'unshelve': None}), _status('ACTIVE'))],
              conf='[DEFAULT]\nshelved_offload_time = 0\n'),
    Operation('delete', _one_host,
              [(lambda test, server: test.api.delete_server(server['id']),
                _gone)], deletes=True),
    Operation('soft_delete', _one_host,
              [(lambda test, server: test.api.delete_server(server['id']),
                _status('SOFT_DELETED'))],
              conf='[DEFAULT]\nreclaim_instance_interval = 3600\n'),
    Operation('restore',
              _then(_one_host,
                    (lambda test, server: test.api.delete_server(
                        server['id']), _status('SOFT_DELETED'))),
              [(_action({'restore': None}), _status('ACTIVE'))],
              conf='[DEFAULT]\nreclaim_instance_interval = 3600\n',
              queueable=True),
    Operation('set_admin_password', _agent_server,
              [(_in_background(_action({'changePassword': {
                  'adminPass': 'n3w'}})), _snapshot_done)],
              conf='[DEFAULT]\nrpc_response_timeout = 3\n'),
]
BY_NAME = {op.name: op for op in OPERATIONS}
#: The subset every CI run executes (make test); the full matrix has its
#: own command.
FAST_SUBSET = ('soft_reboot', 'suspend', 'resize_revert')


# Invariants -----------------------------------------------------------------

def _guests(test, server_id):
    """``{host: power state name}`` of the server's guest on every
    hypervisor of the test (stopped services included).
    """
    out = {}
    for host, conn in test.matrix_connections.items():
        try:
            conn.lookupByUUIDString(server_id)
        except _fakelibvirt().libvirtError:
            continue
        out[host] = test.guest_power_state_on(conn, {'id': server_id})
    return out


def snapshot_state(test, server_id):
    """What the invariants look at, read from the cell database, placement
    and the hypervisors.
    """
    from nova import context as nova_context
    from nova import objects
    ctxt = nova_context.get_admin_context()
    try:
        instance = objects.Instance.get_by_uuid(
            ctxt.elevated(read_deleted='yes'), server_id)
    except Exception:
        instance = None
    allocations = test._get_allocations_by_server_uuid(server_id)
    providers = {test._get_provider_uuid_by_host(h): h
                 for h in test.matrix_connections
                 if h in test.computes}
    migrations = objects.MigrationList.get_by_filters(
        ctxt, {'instance_uuid': server_id})
    migration_allocations = {}
    for migration in migrations:
        held = test._get_allocations_by_server_uuid(migration.uuid)
        if held:
            migration_allocations[migration.uuid] = {
                'status': migration.status,
                'hosts': sorted(providers.get(rp, rp) for rp in held)}
    return {
        'exists': instance is not None and not instance.deleted,
        'vm_state': instance.vm_state if instance else None,
        'task_state': instance.task_state if instance else None,
        'host': instance.host if instance else None,
        'guests': _guests(test, server_id),
        'allocations': sorted(providers.get(rp, rp) for rp in allocations),
        'migration_allocations': migration_allocations,
    }


def evaluate(state, operation, compute_started):
    """``(verdict, failed invariants)`` for a settled state.

    Invariants: nova-compute started; task_state None; the guest on the
    instance's host consistent with vm_state; the guest present unless the
    operation deletes or offloads it; no guest running on two hosts;
    placement allocations only on the instance's host (none when offloaded
    or deleted; for an instance in error with no host, a build interrupted
    before its claim recorded the host, nova keeps the building node's
    allocation until the server is deleted) and no migration holding
    allocations once no migration is in progress.
    """
    from nova_guardrails.lab import scenarios
    lost, stuck = [], []
    guests = state['guests']
    running = sorted(h for h, p in guests.items() if p == 'running')
    if len(running) > 1:
        lost.append('guest running on %s' % ', '.join(running))
    if not compute_started:
        stuck.append('nova-compute did not start')
    if not state['exists']:
        if not operation.deletes:
            lost.append('instance deleted')
        if state['allocations']:
            stuck.append('deleted instance holds allocations on %s' %
                         state['allocations'])
        return _verdict(lost, stuck, None)
    vm_state, host = state['vm_state'], state['host']
    if state['task_state'] is not None:
        stuck.append('task_state %s' % state['task_state'])
    guest = guests.get(host)
    if vm_state in NEEDS_GUEST and guest is None:
        (stuck if vm_state == 'shelved' else lost).append(
            'no guest on %s for vm_state %s' % (host, vm_state))
    elif vm_state in scenarios.GUEST_OF_VM_STATE and vm_state != 'error':
        expected = scenarios.GUEST_OF_VM_STATE[vm_state]
        if (guest or 'pending') not in expected:
            stuck.append('vm_state %s but the guest is %s' % (
                vm_state, guest or 'absent'))
    expected_allocations = [] if (vm_state == 'shelved_offloaded' or
                                  host is None) else [host]
    if vm_state == 'error' and host is None and \
            len(state['allocations']) <= 1:
        # A build interrupted before the claim recorded its host: nova sets
        # it to error (_error_out_instances_whose_build_was_interrupted) and
        # keeps the node's allocation until the server is deleted.
        expected_allocations = state['allocations']
    if vm_state != 'resized' and state['allocations'] != \
            expected_allocations:
        stuck.append('allocations on %s, instance on %s' % (
            state['allocations'] or 'no provider', host))
    if vm_state != 'resized' and state['migration_allocations']:
        stuck.append('migration(s) still hold allocations: %s' %
                     state['migration_allocations'])
    return _verdict(lost, stuck, vm_state)


def _verdict(lost, stuck, vm_state):
    if lost:
        return LOST, lost + stuck
    if stuck:
        return STUCK, stuck
    if vm_state == 'error':
        return ERROR, []
    return RECOVERED, []


# Running --------------------------------------------------------------------

GUARDED_EXTRA = 'queued_grace_seconds = 1\n'
#: A cell's state is settled when it has not changed for QUIET seconds
#: (longer than the queued grace period), or after SETTLE_SECONDS.
QUIET = 1.5
SETTLE_SECONDS = 10


def _settle(test, server_id):
    deadline = time.monotonic() + SETTLE_SECONDS
    state = snapshot_state(test, server_id)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        current = snapshot_state(test, server_id)
        if current != state or _rechecks_pending(test):
            state, quiet_since = current, time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET:
            break
    return state


def _rechecks_pending(test):
    """Does a guard of a running compute still have deferred instances to
    look at again (recovery_table's queued re-check)?
    """
    for compute in list(test.computes.values()):
        guards = getattr(compute.driver, '_guardrails_guards', None) or ()
        for guard in guards:
            if getattr(guard, 'rechecks_pending', lambda: False)():
                return True
    return False


def _conf(operation, guarded):
    from nova_guardrails.lab import harness
    base = (harness.GUARDED_NOVA_CONF + GUARDED_EXTRA if guarded else
            harness.NOVA_ALONE_CONF)
    return base + operation.conf


def _run_case(nova_conf, body):
    """Run ``body(test)`` in a fresh GuardrailsTestBase; returns
    ``(result, error text)``.
    """
    from nova_guardrails.lab import harness
    import unittest
    results = {}

    class MatrixCase(harness.GuardrailsTestBase):
        NOVA_CONF = nova_conf

        def runTest(self):
            results['value'] = body(self)

    outcome = unittest.TestResult()
    MatrixCase('runTest').run(outcome)
    problems = outcome.errors + outcome.failures
    if problems:
        return None, problems[0][1]
    return results.get('value'), None


def _prepare(test, operation):
    test.matrix_connections = {}
    server = operation.prepare(test) or {}
    for host, compute in test.computes.items():
        test.matrix_connections[host] = \
            compute.driver._host.get_connection()
    return server


def trace(operation):
    """The crash points of ``operation`` (one clean run, nova alone).

    :raises RuntimeError: the clean run failed.
    """
    def body(test):
        server = _prepare(test, operation)
        tracer = test.useFixture(Tracer(test))
        test.matrix_tracer = tracer
        tracer.armed = True
        for request, done in operation.steps:
            request(test, server)
            test.wait_until(lambda: done(test, server), timeout=60)
        # Let trailing work of the last step (casts) finish.
        time.sleep(0.5)
        tracer.armed = False
        return list(tracer.points)
    points, error = _run_case(_conf(operation, False), body)
    if error:
        raise RuntimeError('the clean run of %s failed:\n%s' % (
            operation.name, error))
    return points


def clean_effects(points):
    """``{(effect, host): n}``: the hypervisor effects one clean run of the
    operation makes (from its traced crash points).
    """
    out = {}
    for point in points:
        if point.kind == HYPERVISOR:
            key = (point.name, point.host)
            out[key] = max(out.get(key, 0), point.occurrence)
    return out


def _hold_compute_casts(test):
    """Hold every RPC cast to a nova-compute (the compute topic): the
    messages wait as in a queue whose consumer is down. Returns
    ``deliver()``, which stops holding and sends them.
    """
    from oslo_messaging.rpc import client
    held = []
    holding = [True]
    original = client._BaseCallContext.cast

    def cast(context, ctxt, method, **kwargs):
        if holding[0] and context.target.topic == 'compute':
            held.append((context, ctxt, method, kwargs))
            return None
        return original(context, ctxt, method, **kwargs)
    test.useFixture(fixtures.MonkeyPatch(
        'oslo_messaging.rpc.client._BaseCallContext.cast', cast))

    def deliver():
        holding[0] = False
        for context, ctxt, method, kwargs in held:
            original(context, ctxt, method, **kwargs)
        return [method for _, _, method, _ in held]
    return held, deliver


def _restart(test, host):
    """Restart nova-compute ``host`` keeping its hypervisor; False when it
    does not start.
    """
    try:
        test.restart_compute_service(host)
    except Exception:
        return False
    test.matrix_connections[host] = test.computes[
        host].driver._host.get_connection()
    return True


def _late_cell(operation, point, guarded, clean):
    """The operation's request cast while its nova-compute is down, held
    across a restart and delivered after the queued grace period; the
    invariants, and: the operation ran at most once (no hypervisor effect
    more often than in one clean run).
    """
    def body(test):
        server = _prepare(test, operation)
        tracer = test.useFixture(Tracer(test))
        test.matrix_tracer = tracer
        held, deliver = _hold_compute_casts(test)
        tracer.armed = True
        request, _done = operation.steps[0]
        request(test, server)
        deadline = time.monotonic() + 30
        while not held and time.monotonic() < deadline:
            time.sleep(0.05)
        if not held:
            return Cell(operation.name, point.label(), guarded, NOT_REACHED,
                        ['no cast to a compute was made'], {}, False)
        started = _restart(test, point.host)
        _settle(test, server['id'])
        delivered = deliver()
        time.sleep(0.5)
        state = _settle(test, server['id'])
        tracer.armed = False
        verdict, failed = evaluate(state, operation, started)
        again = sorted(
            '%s on %s %d times (one run: %d)' % (name, host, n,
                                                 clean.get((name, host), 0))
            for (kind, name, host), n in tracer.counts.items()
            if kind == HYPERVISOR and n > clean.get((name, host), 0))
        if again:
            failed = failed + ['ran again after the late delivery of %s: '
                               '%s' % (', '.join(delivered),
                                       '; '.join(again))]
            verdict = LOST
        return Cell(operation.name, point.label(), guarded, verdict,
                    failed, dict(state, delivered=delivered), True)
    cell, error = _run_case(_conf(operation, guarded), body)
    if error:
        return Cell(operation.name, point.label(), guarded, 'lab error',
                    [error.strip().splitlines()[-1]], {}, False)
    return cell


def run_cell(operation, point, guarded, clean=None):
    """Crash ``operation`` at ``point``, restart, settle, evaluate."""
    if point.kind == LATE:
        return _late_cell(operation, point, guarded, clean or {})

    def body(test):
        server = _prepare(test, operation)
        tracer = test.useFixture(Tracer(test, point))
        test.matrix_tracer = tracer
        tracer.armed = True
        for request, done in operation.steps:
            request(test, server)
            deadline = time.monotonic() + 60
            while not (tracer.crashed.is_set() or done(test, server)):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            if tracer.crashed.is_set():
                break
        tracer.armed = False
        started = True
        if tracer.crashed.is_set():
            # Let the dying thread unwind, then restart that nova-compute.
            time.sleep(0.2)
            started = _restart(test, point.host)
        state = _settle(test, server['id'])
        before_revive = state
        for host in operation.revive:
            # The repaired host comes back; nova-compute cleans up what was
            # evacuated away (and only that).
            test.restart_compute_service(host)
            test.matrix_connections[host] = test.computes[
                host].driver._host.get_connection()
            state = _settle(test, server['id'])
        verdict, failed = evaluate(state, operation, started)
        if not tracer.crashed.is_set():
            verdict, failed = NOT_REACHED, [
                'the crash point was not reached in this run']
        if operation.revive:
            state = dict(state, before_revive=before_revive)
        return Cell(operation.name, point.label(), guarded, verdict,
                    failed, state, tracer.crashed.is_set())
    cell, error = _run_case(_conf(operation, guarded), body)
    if error:
        return Cell(operation.name, point.label(), guarded, 'lab error',
                    [error.strip().splitlines()[-1]], {}, False)
    return cell


def run(operations=None, guards='both', progress=None):
    """Run the matrix; returns ``{'points': {op: [labels]}, 'cells':
    [Cell]}``.

    :param operations: operation names (default: all of :data:`OPERATIONS`).
    :param guards: ``'on'``, ``'off'`` or ``'both'``.
    :param progress: optional ``f(text)`` called per cell.
    """
    import logging
    import warnings
    warnings.simplefilter('ignore')
    logging.getLogger().setLevel(logging.WARNING)
    selected = [BY_NAME[name] for name in operations] if operations else \
        OPERATIONS
    configs = {'on': [True], 'off': [False], 'both': [False, True]}[guards]
    result = {'points': {}, 'cells': [], 'trace_errors': {}}
    for operation in selected:
        try:
            points = trace(operation)
        except RuntimeError as error:
            result['trace_errors'][operation.name] = str(error)[-2000:]
            if progress:
                progress('%s: trace failed' % operation.name)
            continue
        clean = clean_effects(points)
        if operation.queueable:
            points = points + [CrashPoint(LATE, 'request', H1, 1)]
        result['points'][operation.name] = [p.label() for p in points]
        for point in points:
            for guarded in configs:
                cell = run_cell(operation, point, guarded, clean)
                result['cells'].append(cell)
                if progress:
                    progress('%s | %s | %s: %s %s' % (
                        operation.name, point.label(),
                        'guarded' if guarded else 'nova alone',
                        cell.verdict, '; '.join(cell.failed)))
    return result


def summary(result):
    """``{'nova alone': {verdict: n}, 'guardrails': {verdict: n}}``."""
    out = {}
    for cell in result['cells']:
        column = out.setdefault('guardrails' if cell.guarded else
                                'nova alone', {})
        column[cell.verdict] = column.get(cell.verdict, 0) + 1
    return out


def markdown(result, seconds=None):
    """``crash-matrix.md``: summary, then one row per cell pair."""
    import nova.version
    totals = summary(result)
    lines = ['# Crash matrix', '',
             'nova %s, libvirt driver over fakelibvirt; generated by '
             '`nova-guardrails crash-matrix` on %s%s.' % (
                 nova.version.version_string(),
                 datetime.date.today().isoformat(),
                 ' in %.0f s' % seconds if seconds else ''), '',
             '| | cells | %s |' % ' | '.join(VERDICTS),
             '|---|---|' + '---|' * len(VERDICTS)]
    for column in ('nova alone', 'guardrails'):
        if column in totals:
            counts = totals[column]
            lines.append('| %s | %d | %s |' % (
                column, sum(counts.get(v, 0) for v in VERDICTS),
                ' | '.join(str(counts.get(v, 0)) for v in VERDICTS)))
    unreached = sorted({'%s (%s)' % (c.operation, c.point)
                        for c in result['cells'] if c.verdict == NOT_REACHED})
    if unreached:
        lines += ['', 'Crash points not reached when the cell ran (no '
                  'verdict, not counted): %s.' % '; '.join(unreached)]
    others = ({v for c in totals.values() for v in c} - set(VERDICTS) -
              {NOT_REACHED})
    if others:
        lines += ['', 'Cells the lab could not run: %s.' % ', '.join(
            sorted(others))]
    for name, error in sorted(result.get('trace_errors', {}).items()):
        lines += ['', 'Operation `%s` not run: its clean run failed (%s).'
                  % (name, error.strip().splitlines()[-1])]
    lines += ['', '| operation | crash point | nova alone | guardrails |',
              '|---|---|---|---|']
    pairs = {}
    for cell in result['cells']:
        pairs.setdefault((cell.operation, cell.point), {})[
            cell.guarded] = cell

    def text(cell):
        if cell is None:
            return '-'
        if cell.failed:
            return '%s: %s' % (cell.verdict, '; '.join(cell.failed))
        return cell.verdict
    for (operation, point), cells in pairs.items():
        lines.append('| %s | %s | %s | %s |' % (
            operation, point, text(cells.get(False)),
            text(cells.get(True))))
    return '\n'.join(lines) + '\n'


def _parallel(operations, guards, jobs, quiet, log_path):
    """Run the operations in ``jobs`` subprocesses of ``nova-guardrails
    crash-matrix`` (one process per group of operations, each with its own
    in-process nova) and merge their JSON results.
    """
    import os
    import subprocess
    import sys
    import tempfile
    names = list(operations or BY_NAME)
    groups = [names[i::jobs] for i in range(jobs)]
    tmp = tempfile.mkdtemp(prefix='nova-guardrails-matrix-')
    procs = []
    for i, group in enumerate(g for g in groups if g):
        part = os.path.join(tmp, 'part-%d' % i)
        cmd = [sys.executable, '-m', 'nova_guardrails.cmd.cli',
               'crash-matrix', '--guards', guards, '--ops'] + group + [
            '--output', part + '.md', '--json', part + '.json',
            '--log-file', '%s.%d' % (log_path, i) if log_path else
            part + '.log']
        if quiet:
            cmd.append('--quiet')
        procs.append((part, subprocess.Popen(
            cmd, stdout=None if not quiet else subprocess.DEVNULL)))
    result = {'points': {}, 'cells': [], 'trace_errors': {}}
    for part, proc in procs:
        proc.wait()
        try:
            with open(part + '.json') as f:
                data = json.load(f)
        except OSError:
            result['trace_errors'][os.path.basename(part)] = (
                'worker exited %s without a result' % proc.returncode)
            continue
        result['points'].update(data['points'])
        result['trace_errors'].update(data['trace_errors'])
        result['cells'].extend(Cell(**c) for c in data['cells'])
    order = {name: i for i, name in enumerate(BY_NAME)}
    result['cells'].sort(key=lambda c: (order.get(c.operation, 99),))
    return result, tmp


def main(operations=None, guards='both', output='crash-matrix.md',
         json_path='crash-matrix.json', log_path=None, quiet=False,
         jobs=1):
    """The ``crash-matrix`` command; returns the exit code (0: every cell
    ran; the verdicts are the report, not the exit code).

    :param jobs: worker processes (each runs whole operations).
    """
    from nova_guardrails.lab import runner
    import sys
    started = time.monotonic()
    holder = {}

    def progress(line):
        if not quiet:
            holder['out'].write(line + '\n')
            holder['out'].flush()

    def body(out, log):
        holder['out'] = out
        holder['log'] = log
        return run(operations, guards, progress)
    if jobs > 1:
        result, holder['log'] = _parallel(operations, guards, jobs, quiet,
                                          log_path)
    else:
        result = runner.quietly(body, log_path,
                                prefix='nova-guardrails-matrix-')
    seconds = time.monotonic() - started
    document = markdown(result, seconds)
    with open(output, 'w') as f:
        f.write(document)
    with open(json_path, 'w') as f:
        json.dump({'summary': summary(result), 'points': result['points'],
                   'trace_errors': result['trace_errors'],
                   'cells': [c.as_dict() for c in result['cells']]},
                  f, indent=2, sort_keys=True, default=str)
    sys.stdout.write(document.split('\n| operation |')[0] + '\n')
    sys.stdout.write('wrote %s and %s; nova\'s log: %s\n' % (
        output, json_path, holder['log']))
    errors = [c for c in result['cells']
              if c.verdict not in VERDICTS + (NOT_REACHED,)]
    return 1 if errors or result['trace_errors'] else 0
