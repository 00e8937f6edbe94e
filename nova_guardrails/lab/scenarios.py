"""Crash scenarios: a server, an operation, nova-compute dying mid-way.

Each :class:`Scenario` boots a server on ``compute1`` of a
:class:`~nova_guardrails.lab.harness.GuardrailsTestBase`, starts an
operation through the compute API, kills nova-compute at a crash point
(:class:`~nova_guardrails.lab.harness.ComputeCrash`) and returns the server.
:func:`crash_and_restart` then restarts the compute service keeping the
hypervisor state and returns an :class:`Outcome`. The functional tests and
``nova-guardrails lab`` run the same scenarios, nova alone and guarded.
"""

import dataclasses
import json

import fixtures
from nova.compute import task_states
import nova.conf

HOST = 'compute1'
DOMAIN = 'nova.tests.fixtures.libvirt.Domain'
CONNECTION = 'nova.tests.fixtures.libvirt.Connection'
LIBVIRT_DRIVER = 'nova.virt.libvirt.driver.LibvirtDriver'

CONF = nova.conf.CONF


@dataclasses.dataclass
class Scenario:
    """A crash scenario.

    :ivar name: identifier (also the functional test's subject).
    :ivar title: one line for the lab table.
    :ivar source: the bug or seed it comes from.
    :ivar crash: ``f(test) -> server``: boot, operate, crash.
    :ivar restart_fault: optional ``f(test)`` run before the restart, to
        make the hypervisor fail during start-up.
    """

    name: str
    title: str
    source: str
    crash: object
    restart_fault: object = None


@dataclasses.dataclass
class Outcome:
    """What a restart made of a crashed server.

    States are ``(vm_state, task_state, power_state)``; ``guest`` is the
    power state name of the domain on the hypervisor.
    """

    at_crash: tuple
    guest_at_crash: str
    started: bool
    start_error: str | None
    after: tuple | None
    guest_after: str
    reboots: list
    decision: dict | None

    @property
    def verdict(self):
        """``'compute down'``: nova-compute did not start;
        ``'recovered'``: task_state None, vm_state active with the guest
        running or stopped with it shut down;
        ``'error'``: task_state None, vm_state error;
        ``'stuck'``: anything else (a task_state left, or a vm_state that
        contradicts the guest)."""
        if not self.started:
            return 'compute down'
        vm_state, task_state, _ = self.after
        if task_state is not None:
            return 'stuck'
        if vm_state == 'error':
            return 'error'
        expected = {'active': ('running',),
                    'stopped': ('shutdown', 'pending')}
        if self.guest_after in expected.get(vm_state, ()):
            return 'recovered'
        return 'stuck'


def boot(test):
    test.start_compute(HOST)
    return test._create_server(networks='none')


def _reboot(test, server, kind):
    test.api.post_server_action(server['id'], {'reboot': {'type': kind}})


def soft_reboot_guest_off(test):
    server = boot(test)
    crashed = test.crash_at(DOMAIN, 'shutdown', when='after')
    _reboot(test, server, 'SOFT')
    test.wait_for_crash(crashed)
    return server


def soft_reboot_guest_running(test):
    server = boot(test)
    crashed = test.crash_at(DOMAIN, 'shutdown', when='before')
    _reboot(test, server, 'SOFT')
    test.wait_for_crash(crashed)
    return server


def _stopped_server(test):
    server = boot(test)
    test._stop_server(server)
    return server


def hard_reboot_rebooting_hard(test):
    """Stopped server, hard reboot; dies before acknowledging it."""
    server = _stopped_server(test)
    crashed = test.crash_at_task_state(task_states.REBOOT_PENDING_HARD,
                                       when='before')
    _reboot(test, server, 'HARD')
    test.wait_for_crash(crashed)
    return server


def hard_reboot_pending_hard(test):
    """Stopped server, hard reboot acknowledged; dies before the driver."""
    server = _stopped_server(test)
    crashed = test.crash_at_task_state(task_states.REBOOT_STARTED_HARD,
                                       when='before')
    _reboot(test, server, 'HARD')
    test.wait_for_crash(crashed)
    return server


def hard_reboot_started_hard(test):
    """Active server, hard reboot; dies after the guest was destroyed."""
    server = boot(test)
    crashed = test.crash_at(DOMAIN, 'destroy', when='after')
    _reboot(test, server, 'HARD')
    test.wait_for_crash(crashed)
    return server


def hard_reboot_error_instance(test):
    """Server in vm_state error, hard reboot to reset it; dies after the
    guest was destroyed."""
    server = boot(test)
    test.api.post_server_action(server['id'],
                                {'os-resetState': {'state': 'error'}})
    test._wait_for_server_parameter(server,
                                    {'OS-EXT-STS:vm_state': 'error'})
    crashed = test.crash_at(DOMAIN, 'destroy', when='after')
    _reboot(test, server, 'HARD')
    test.wait_for_crash(crashed)
    return server


def _guest_cannot_start(test):
    from nova.tests.fixtures import libvirt as fakelibvirt

    def fail(*args, **kwargs):
        raise fakelibvirt.make_libvirtError(
            fakelibvirt.libvirtError, 'internal error: qemu died at start-up',
            error_code=fakelibvirt.VIR_ERR_INTERNAL_ERROR)
    test.useFixture(fixtures.MonkeyPatch(DOMAIN + '.createWithFlags', fail))


def soft_reboot_pending_guest_running(test):
    """Soft reboot acknowledged (reboot_pending); dies before the driver."""
    server = boot(test)
    crashed = test.crash_at_task_state(task_states.REBOOT_STARTED,
                                       when='before')
    _reboot(test, server, 'SOFT')
    test.wait_for_crash(crashed)
    return server


def stop_before_driver(test):
    """Stop (powering-off); dies before the driver powers the guest off."""
    server = boot(test)
    crashed = test.crash_at(LIBVIRT_DRIVER, 'power_off', when='before')
    test.api.post_server_action(server['id'], {'os-stop': None})
    test.wait_for_crash(crashed)
    return server


def suspend_before_driver(test):
    """Suspend (suspending); dies before the driver suspends the guest."""
    server = boot(test)
    crashed = test.crash_at(LIBVIRT_DRIVER, 'suspend', when='before')
    test.api.post_server_action(server['id'], {'suspend': None})
    test.wait_for_crash(crashed)
    return server


#: Scenarios the functional tests run besides the lab's.
MORE_SCENARIOS = [
    Scenario('soft_reboot_pending_guest_running',
             'soft reboot acknowledged, died before the driver ran',
             'seed 000', soft_reboot_pending_guest_running),
    Scenario('stop_before_driver', 'stop, died before the guest powered off',
             'nova _init_instance (powering-off)', stop_before_driver),
    Scenario('suspend_before_driver', 'suspend, died before the driver ran',
             'issue 3 (suspending, unlisted here)', suspend_before_driver),
]

SCENARIOS = [
    Scenario('soft_reboot_guest_off',
             'soft reboot, died after the guest shut down',
             'seed 000, nova bug 1072751', soft_reboot_guest_off),
    Scenario('soft_reboot_guest_running',
             'soft reboot, died before the guest shut down',
             'seed 000', soft_reboot_guest_running),
    Scenario('hard_reboot_rebooting_hard',
             'hard reboot of a stopped server, died before acknowledging',
             'seed 000', hard_reboot_rebooting_hard),
    Scenario('hard_reboot_pending_hard',
             'hard reboot of a stopped server, died before the driver ran',
             'seed 000', hard_reboot_pending_hard),
    Scenario('hard_reboot_started_hard',
             'hard reboot, died after the guest was destroyed',
             'seed 000', hard_reboot_started_hard),
    Scenario('hard_reboot_error_instance',
             'hard reboot to reset a server in error, died mid-way',
             'seed 000 (vm_state error)', hard_reboot_error_instance),
    Scenario('startup_reboot_fails',
             'soft reboot died with the guest off; guest fails to start',
             'seed 000 + a failing hypervisor', soft_reboot_guest_off,
             restart_fault=_guest_cannot_start),
]
BY_NAME = {s.name: s for s in SCENARIOS + MORE_SCENARIOS}


def _decision(server):
    if not hasattr(CONF, 'guardrails'):
        return None
    try:
        with open(CONF.guardrails.report_path) as f:
            report = json.load(f)
    except OSError:
        return None
    rows = [d for d in report['decisions']
            if d['instance_uuid'] == server['id']]
    return rows[-1] if rows else None


def crash_and_restart(test, scenario):
    """Run ``scenario`` on ``test``, restart compute1, return an Outcome."""
    server = scenario.crash(test)
    conn = test.computes[HOST].driver._host.get_connection()
    at_crash = test.server_states(server)
    guest_at_crash = test.guest_power_state_on(conn, server)
    reboots = []
    test.spy(LIBVIRT_DRIVER, 'reboot',
             lambda self, context, instance, network_info, reboot_type,
             *a, **kw: reboots.append(reboot_type))
    if scenario.restart_fault:
        scenario.restart_fault(test)
    started, start_error = True, None
    try:
        test.restart_compute_service(HOST)
    except Exception as error:
        started, start_error = False, '%s: %s' % (type(error).__name__, error)
    after = test.server_states(server)
    return Outcome(at_crash=at_crash, guest_at_crash=guest_at_crash,
                   started=started, start_error=start_error, after=after,
                   guest_after=test.guest_power_state_on(conn, server),
                   reboots=reboots, decision=_decision(server))
