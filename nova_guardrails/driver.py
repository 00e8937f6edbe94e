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
"""GuardrailsDriver: nova's ComputeDriver that wraps the real one.

nova-compute loads it from nova.conf alone::

    [DEFAULT]
    compute_driver = guardrails.GuardrailsDriver
    [guardrails]
    driver = libvirt.LibvirtDriver
    enabled_guards = recovery_table

``nova.virt.driver.load_compute_driver`` imports ``nova.virt.guardrails`` (the
shim) and calls ``GuardrailsDriver(virtapi)``. The wrapper builds the real
driver with the same virtapi and hands every attribute access to it, except
its own methods. Through the virtapi (``ComputeVirtAPI._compute``) it
reaches the ComputeManager that is loading it and wraps the methods of
:data:`~nova_guardrails.guards.base.MANAGER_HOOKS` on that one manager
instance; the driver methods of
:data:`~nova_guardrails.guards.base.DRIVER_HOOKS` pass through the guards'
hooks on the wrapper (instance attributes both; nova's classes are never
patched).
"""

import functools
import logging as logging_std
import os
import sys

from nova.compute import manager as compute_manager
import nova.conf
from nova.virt import driver as nova_driver
from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import importutils

from nova_guardrails import conf as guardrails_conf
from nova_guardrails import exception
from nova_guardrails import guards as guards_mod
from nova_guardrails.guards import base as guards_base
from nova_guardrails import report as report_mod

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: The wrapper's own state (instance attributes set in ``__init__``).
_OWN_STATE = (
    '_guardrails_driver', '_guardrails_guards', '_guardrails_report',
    '_guardrails_manager', '_guardrails_host_checked',
)

#: Drivers nova special-cases by the *name* in ``[DEFAULT] compute_driver``;
#: wrapping them would silently switch that handling off.
_REFUSED_DRIVERS = {
    'ironic': 'nova skips its node-identity and host-rename checks only when '
              '[DEFAULT] compute_driver names ironic; behind the wrapper it '
              'would refuse to start or, worse, check ironic nodes as local '
              'ones',
}


def _option(name):
    """``CONF.guardrails.<name>``, as GuardrailsConfigError when invalid."""
    try:
        return getattr(CONF.guardrails, name)
    except (cfg.ConfigFileValueError, ValueError) as error:
        raise exception.GuardrailsConfigError(reason=(
            '[guardrails] %s is invalid: %s' % (name, error))) from error


def _build_real_driver(virtapi, kwargs):
    name = _option('driver')
    if not name:
        raise exception.GuardrailsConfigError(reason=(
            '[guardrails] driver is required when [DEFAULT] compute_driver '
            'is guardrails.GuardrailsDriver: set it to the driver to wrap, '
            'for example libvirt.LibvirtDriver'))
    module = name.split('.', 1)[0].lower()
    if module == 'guardrails':
        raise exception.GuardrailsConfigError(reason=(
            '[guardrails] driver = %s would wrap nova-guardrails in itself; '
            'name the real driver, for example libvirt.LibvirtDriver' % name))
    for refused, why in _REFUSED_DRIVERS.items():
        # The same test as nova's: the name anywhere in the driver's name.
        if refused in name.lower():
            raise exception.GuardrailsConfigError(reason=(
                '[guardrails] driver = %s is not supported: %s' % (
                    name, why)))
    try:
        real = importutils.import_object('nova.virt.%s' % name, virtapi,
                                         **kwargs)
    except ImportError as error:
        raise exception.GuardrailsConfigError(reason=(
            '[guardrails] driver = %s cannot be loaded from nova.virt: %s'
            % (name, error))) from error
    if not isinstance(real, nova_driver.ComputeDriver):
        raise exception.GuardrailsConfigError(reason=(
            '[guardrails] driver = %s is not a nova.virt.driver.ComputeDriver'
            % name))
    return real


#: Exit status of a nova-compute whose start a guard refused (sysexits'
#: EX_CONFIG): a service manager shows it failed, and
#: ``RestartPreventExitStatus=78`` keeps systemd from restarting it in a loop.
EXIT_REFUSED = os.EX_CONFIG


def _exit_refused(error):
    """End the nova-compute process after a refusal.

    When ``init_host`` raises, nova-compute (nova 34, threading mode) logs
    the error and then never exits: futurist's exit handler joins the
    libvirt driver's connection event thread, which does not end (measured
    on a real deployment; nova alone hangs the same way on its own start-up
    refusals). A refused nova-compute that keeps running looks alive to the
    operator's service manager. Only in a process started by nova-compute's
    ``main()`` (``nova.cmd.compute`` loaded); elsewhere (nova's in-process
    fixtures, tools) the exception propagates as usual.
    """
    if 'nova.cmd.compute' not in sys.modules:
        return
    LOG.critical('guardrails: nova-compute refused to start, exiting with '
                 'status %(status)d: %(error)s',
                 {'status': EXIT_REFUSED, 'error': error})
    logging_std.shutdown()
    os._exit(EXIT_REFUSED)


class GuardrailsDriver(nova_driver.ComputeDriver):
    """A ComputeDriver that runs guards around the real driver.

    :param virtapi: the ``ComputeVirtAPI`` nova-compute passes to drivers.
    :param kwargs: passed on to the real driver's constructor.
    :raises GuardrailsConfigError: an option of ``[guardrails]`` is missing
        or invalid, or a guard cannot be loaded; nova-compute stops with the
        message, before it touches any instance.
    """

    def __init__(self, virtapi, **kwargs):
        # ComputeDriver.__init__ is not called: the state it sets is the real
        # driver's, and every attribute but _OWN_ATTRIBUTES is read there.
        guardrails_conf.register_opts(CONF)
        names = _option('enabled_guards')
        # The enabled guards' own options (their CONFIG_OPTS) join
        # [guardrails] now: an unknown guard, or an option that clashes with
        # a registered one, stops nova-compute here.
        guard_opts = guards_mod.register_opts(CONF, names)
        # Every [guardrails] value is parsed now, so a bad one stops
        # nova-compute here with its name.
        for opt in guardrails_conf.guardrails_opts + [
                opt for _name, opts in guard_opts for opt in opts]:
            _option(opt.dest)
        real = _build_real_driver(virtapi, kwargs)
        report = report_mod.StartupReport(
            _option('report_path'), CONF.host, names)
        self._guardrails_driver = real
        self._guardrails_report = report
        self._guardrails_guards = guards_mod.load(names, CONF, report)
        self._guardrails_manager = None
        self._guardrails_host_checked = False
        # The driver methods guards hook (DRIVER_HOOKS): instance attributes
        # of this wrapper, which nova's manager calls as driver methods.
        for name in guards_base.DRIVER_HOOKS:
            setattr(self, name, self._guardrails_pass_through(name))
        LOG.info('guardrails: wrapping %(driver)s with guards %(guards)s',
                 {'driver': type(real).__name__,
                  'guards': ', '.join(names) or '(none)'})
        manager = getattr(virtapi, '_compute', None)
        if not isinstance(manager, compute_manager.ComputeManager):
            manager = None
        for guard in self._guardrails_guards:
            guard.wrap_driver(real, manager)
        if manager is not None:
            self.guardrails_bind(manager)
        else:
            LOG.warning('guardrails: the driver was built without a '
                        'ComputeManager (virtapi %r); no start-up guard runs',
                        virtapi)

    def __getattribute__(self, name):
        if name in _OWN_ATTRIBUTES or (
                name.startswith('__') and name.endswith('__')):
            return object.__getattribute__(self, name)
        return getattr(object.__getattribute__(self, '_guardrails_driver'),
                       name)

    def __setattr__(self, name, value):
        if name in _OWN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            setattr(self._guardrails_driver, name, value)

    def __delattr__(self, name):
        if name in _OWN_ATTRIBUTES:
            object.__delattr__(self, name)
        else:
            delattr(self._guardrails_driver, name)

    def __repr__(self):
        return '<GuardrailsDriver of %r>' % (self._guardrails_driver,)

    def guardrails_bind(self, manager):
        """Wrap the start-up methods of ``manager`` (this instance only).

        Each method of :data:`~nova_guardrails.guards.base.MANAGER_HOOKS`
        becomes an instance attribute that runs every guard's hook in
        ``[guardrails] enabled_guards`` order, nova's own method last.
        """
        self._guardrails_manager = manager
        guards = self._guardrails_guards

        def chain(hook, original):
            call = original
            for guard in reversed(guards):
                call = functools.partial(getattr(guard, hook), manager,
                                         call_next=call)
            return functools.wraps(original)(
                lambda *args, **kwargs: call(*args, **kwargs))

        for hook, method in guards_base.MANAGER_HOOKS.items():
            setattr(manager, method, chain(hook, getattr(manager, method)))

        # Special case: init_host's chain runs inside the start-up report
        # (begin, then completed or failed) and a guard's refusal ends the
        # process (_exit_refused); each start-up checks the host anew.
        init_host = manager.init_host
        report = self._guardrails_report

        @functools.wraps(manager.init_host)
        def guarded_init_host(*args, **kwargs):
            self._guardrails_host_checked = False
            report.begin()
            try:
                result = init_host(*args, **kwargs)
            except Exception as error:
                report.finish('failed: %s' % error)
                if isinstance(error, exception.StartupRefused):
                    _exit_refused(error)
                raise
            report.finish('completed')
            return result

        manager.init_host = guarded_init_host
        # Special case, not a chain of the guards' hooks: nova 29 checks the
        # node identity (a new service over guests, an upgraded service's
        # identity file) before the driver's init_host; nova >= 30 after it.
        # The guards' host checks (driver_init_host) run before the first of
        # them on every release, once per start-up
        # (:meth:`_guardrails_check_host`).
        for name in ('_sanity_check_new_host',
                     '_ensure_existing_node_identity'):
            original = getattr(manager, name, None)
            if original is not None:
                setattr(manager, name, self._checked_first(original))

    def _guardrails_call(self, name, *args, **kwargs):
        """``self._guardrails_driver.<name>(*args, **kwargs)`` through each
        guard's hook ``<name>``, in ``enabled_guards`` order.
        """
        manager = self._guardrails_manager
        call = getattr(self._guardrails_driver, name)
        for guard in reversed(self._guardrails_guards):
            call = functools.partial(getattr(guard, name), manager,
                                     call_next=call)
        return call(*args, **kwargs)

    def _guardrails_pass_through(self, name):
        """The wrapper's ``name`` (one of DRIVER_HOOKS): the real driver's,
        through the guards' hooks ``name`` (revert_vif's
        ``finish_revert_migration``: nova bug 1450624).
        """
        @functools.wraps(getattr(type(self._guardrails_driver), name,
                                 getattr(nova_driver.ComputeDriver, name)))
        def pass_through(*args, **kwargs):
            return self._guardrails_call(name, *args, **kwargs)
        return pass_through

    # Not a DRIVER_HOOKS chain: each guard's driver_cleanup_host is a
    # notification (no call_next), then the real driver's.
    def cleanup_host(self, host):
        """Each guard's ``driver_cleanup_host`` (nova-compute is stopping),
        then the real driver's ``cleanup_host(host)``.
        """
        for guard in self._guardrails_guards:
            guard.driver_cleanup_host(self._guardrails_manager, host)
        self._guardrails_driver.cleanup_host(host)

    def _checked_first(self, original):
        """``original`` (a node identity check of nova's init_host),
        after the guards' host checks when they have not run yet in this
        start-up.
        """
        @functools.wraps(original)
        def checked(*args, **kwargs):
            if not self._guardrails_host_checked:
                # The libvirt driver's init_host has not run (nova 29): its
                # first step, idempotent, before the checks open the
                # connection (libvirt's error handler and event loop must be
                # registered before the first connection, nova's
                # Host.initialize says).
                initialize = getattr(getattr(self._guardrails_driver,
                                             '_host', None),
                                     'initialize', None)
                if callable(initialize):
                    initialize()
            self._guardrails_check_host()
            return original(*args, **kwargs)
        return checked

    def _guardrails_check_host(self):
        """Each guard's ``driver_init_host``, once per start-up: before
        nova's first node identity check (``_sanity_check_new_host`` or
        ``_ensure_existing_node_identity``, which nova 29 runs before the
        driver's ``init_host``), else right after the driver's
        ``init_host``.
        """
        if self._guardrails_host_checked:
            return
        self._guardrails_host_checked = True
        manager = self._guardrails_manager
        for guard in self._guardrails_guards:
            guard.driver_init_host(manager, manager.host)

    # Special case, not a DRIVER_HOOKS chain: the guards' host checks run
    # once per start-up (_guardrails_check_host), here or earlier on nova 29
    # (_checked_first).
    def init_host(self, host):
        """The real driver's ``init_host(host)``, then each guard's
        ``driver_init_host`` (unless nova 29 already ran them, before its
        node identity checks); nova's node checks and evacuation clean-up
        come after this in ``ComputeManager.init_host``.
        """
        self._guardrails_driver.init_host(host)
        if self._guardrails_manager is None:
            return
        self._guardrails_check_host()


#: Attributes of the wrapper itself; every other attribute is the real
#: driver's: its state, the methods GuardrailsDriver defines (init_host and
#: cleanup_host among them) and the pass-through methods of DRIVER_HOOKS.
_OWN_ATTRIBUTES = frozenset(
    _OWN_STATE + guards_base.DRIVER_HOOKS + tuple(
        name for name in vars(GuardrailsDriver) if not name.startswith('__')))
