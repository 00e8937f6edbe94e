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
"""Scenarios of the recovery_table guard: nova-compute dying mid-operation.

nova bug 1072751 (a reboot interrupted by a restart leaves the instance in
a reboot task_state, or nova reboots it again) and the blueprint "recover
from stuck states" (the task_states nova's ``_init_instance`` leaves:
suspending, shelving_offloading, ...). Each scenario boots a server on
:data:`HOST` (``compute1``), asks nova-api for an action and kills
nova-compute at a crash point
(:class:`~nova_guardrails.lab.harness.ComputeCrash`, right after
fakelibvirt's ``Domain.shutdown``/``destroy``, a driver method, or the
compute's save of a task_state); :func:`crash_and_restart` then restarts
it keeping the hypervisor and returns an :class:`Outcome`. States are
``(vm_state, task_state, power_state)``.
"""

import dataclasses

import fixtures
from nova.compute import task_states

from nova_guardrails.lab.scenarios import base

#: The one compute of these scenarios.
HOST = 'compute1'
DOMAIN = base.DOMAIN
Scenario = base.Scenario
LIBVIRT_DRIVER = base.LIBVIRT_DRIVER


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

    def situation(self):
        """The state at the crash, for the lab table."""
        return '%s / %s / %s' % (self.at_crash[0], self.at_crash[1],
                                 self.guest_at_crash)

    def cell(self, guarded):
        """What the restart made of the server, for the lab table."""
        vm_state, task_state, _ = self.after
        text = '%s / %s / %s' % (vm_state, task_state or '-',
                                 self.guest_after)
        if not self.started:
            text = 'nova-compute DID NOT START\n' + text
        if guarded:
            d = self.decision
            text += '\naction: %s' % (
                '%s (%s)' % (d['action'], d['outcome']) if d else 'none')
        return text

    def as_dict(self):
        return {
            'verdict': self.verdict,
            'at_crash': list(self.at_crash),
            'guest_at_crash': self.guest_at_crash,
            'compute_started': self.started,
            'start_error': self.start_error,
            'after': list(self.after) if self.after else None,
            'guest_after': self.guest_after,
            'driver_reboots': self.reboots,
            'decision': self.decision,
        }

    @property
    def verdict(self):
        """``'compute down'``: nova-compute did not start;
        ``'recovered'``: task_state None, vm_state active with the guest
        running or stopped with it shut down;
        ``'error'``: task_state None, vm_state error;
        ``'stuck'``: anything else (a task_state left, or a vm_state that
        contradicts the guest).
        """
        if not self.started:
            return 'compute down'
        vm_state, task_state, _ = self.after
        if task_state is not None:
            return 'stuck'
        if vm_state == 'error':
            return 'error'
        expected = base.GUEST_OF_VM_STATE
        if self.guest_after in expected.get(vm_state, ()):
            return 'recovered'
        return 'stuck'


def boot(test):
    """Start nova-compute :data:`HOST`; boot a server (no network) on it.

    :returns: the server's API dict, ACTIVE.
    """
    test.start_compute(HOST)
    return test._create_server(networks='none')


def interrupt(test, server, crashed, action):
    """Ask nova-api for ``action`` on ``server``; wait until nova-compute
    dies at the crash point ``crashed`` (from ``test.crash_at...``).

    :param crashed: the ``threading.Event`` ``test.crash_at`` or
        ``test.crash_at_task_state`` returned.
    :param action: the body of a server action (``{'reboot': {...}}``).
    :returns: ``server``.
    :raises AssertionError: nova-compute did not reach the crash point
        (``test.wait_for_crash``, 30 s).
    """
    test.api.post_server_action(server['id'], action)
    test.wait_for_crash(crashed)
    return server


def _reboot(kind):
    return {'reboot': {'type': kind}}


def soft_reboot_guest_off(test):
    server = boot(test)
    return interrupt(test, server, test.crash_at(DOMAIN, 'shutdown'),
                     _reboot('SOFT'))


def soft_reboot_guest_running(test):
    server = boot(test)
    return interrupt(
        test, server, test.crash_at(DOMAIN, 'shutdown', when='before'),
        _reboot('SOFT'))


def _stopped_server(test):
    server = boot(test)
    test._stop_server(server)
    return server


def hard_reboot_rebooting_hard(test):
    """Stopped server, hard reboot; dies before acknowledging it."""
    server = _stopped_server(test)
    return interrupt(test, server, test.crash_at_task_state(
        task_states.REBOOT_PENDING_HARD), _reboot('HARD'))


def hard_reboot_pending_hard(test):
    """Stopped server, hard reboot acknowledged; dies before the driver."""
    server = _stopped_server(test)
    return interrupt(test, server, test.crash_at_task_state(
        task_states.REBOOT_STARTED_HARD), _reboot('HARD'))


def hard_reboot_started_hard(test):
    """Active server, hard reboot; dies after the guest was destroyed."""
    server = boot(test)
    return interrupt(test, server, test.crash_at(DOMAIN, 'destroy'),
                     _reboot('HARD'))


def hard_reboot_error_instance(test):
    """Server in vm_state error, hard reboot to reset it; dies after the
    guest was destroyed.
    """
    server = boot(test)
    test.api.post_server_action(server['id'],
                                {'os-resetState': {'state': 'error'}})
    test._wait_for_server_parameter(server,
                                    {'OS-EXT-STS:vm_state': 'error'})
    return interrupt(test, server, test.crash_at(DOMAIN, 'destroy'),
                     _reboot('HARD'))


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
    return interrupt(test, server, test.crash_at_task_state(
        task_states.REBOOT_STARTED), _reboot('SOFT'))


def stop_before_driver(test):
    """Stop (powering-off); dies before the driver powers the guest off."""
    server = boot(test)
    return interrupt(
        test, server, test.crash_at(LIBVIRT_DRIVER, 'power_off',
                                    when='before'), {'os-stop': None})


def suspend_before_driver(test):
    """Suspend (suspending); dies before the driver suspends the guest."""
    server = boot(test)
    return interrupt(
        test, server, test.crash_at(LIBVIRT_DRIVER, 'suspend',
                                    when='before'), {'suspend': None})


def suspend_guest_saved(test):
    """Suspend; dies after the driver saved the guest, before recording
    it (blueprint "recover from stuck states": a task_state nova 34
    leaves stuck).
    """
    server = boot(test)
    return interrupt(
        test, server, test.crash_at(LIBVIRT_DRIVER, 'suspend',
                                    when='after'), {'suspend': None})


def shelve_offload_interrupted(test):
    """Shelved server, shelve offload; dies after the driver destroyed the
    guest, before recording it (blueprint "recover from stuck states").
    """
    test.flags(shelved_offload_time=-1)
    server = boot(test)
    test.api.post_server_action(server['id'], {'shelve': None})
    test._wait_for_state_change(server, 'SHELVED')
    return interrupt(
        test, server, test.crash_at(LIBVIRT_DRIVER, 'destroy',
                                    when='after'), {'shelveOffload': None})


#: Scenarios the functional tests run besides the lab's.
MORE_SCENARIOS = [
    Scenario('soft_reboot_pending_guest_running',
             'soft reboot acknowledged, died before the driver ran',
             'nova bug 1072751', soft_reboot_pending_guest_running,
             label='bug 1072751: soft reboot, died before the driver'),
    Scenario('stop_before_driver', 'stop, died before the guest powered off',
             'nova _init_instance (powering-off)', stop_before_driver,
             label='nova _init_instance: stop, died before power-off'),
    Scenario('suspend_before_driver', 'suspend, died before the driver ran',
             'blueprint "recover from stuck states" (suspending)',
             suspend_before_driver,
             label='bp stuck states: suspend, died before the driver'),
]

SCENARIOS = [
    Scenario('soft_reboot_guest_off',
             'soft reboot, died after the guest shut down',
             'nova bug 1072751', soft_reboot_guest_off,
             label='bug 1072751: soft reboot, died after guest shut down'),
    Scenario('soft_reboot_guest_running',
             'soft reboot, died before the guest shut down',
             'nova bug 1072751', soft_reboot_guest_running,
             label='bug 1072751: soft reboot, died before guest shut down'),
    Scenario('hard_reboot_rebooting_hard',
             'hard reboot of a stopped server, died before acknowledging',
             'nova bug 1072751', hard_reboot_rebooting_hard,
             label='bug 1072751: hard reboot of stopped, unacknowledged'),
    Scenario('hard_reboot_pending_hard',
             'hard reboot of a stopped server, died before the driver ran',
             'nova bug 1072751', hard_reboot_pending_hard,
             label='bug 1072751: hard reboot of stopped, before driver'),
    Scenario('hard_reboot_started_hard',
             'hard reboot, died after the guest was destroyed',
             'nova bug 1072751', hard_reboot_started_hard,
             label='bug 1072751: hard reboot, died after guest destroyed'),
    Scenario('hard_reboot_error_instance',
             'hard reboot to reset a server in error, died mid-way',
             'nova bug 1072751 (vm_state error)',
             hard_reboot_error_instance,
             label='bug 1072751: hard reboot of a server in error'),
    Scenario('startup_reboot_fails',
             'soft reboot died with the guest off; guest fails to start',
             'nova bug 1072751 + a failing hypervisor',
             soft_reboot_guest_off,
             restart_fault=_guest_cannot_start,
             label='bug 1072751: soft reboot, guest then fails to start'),
    Scenario('suspend_guest_saved',
             'suspend, died after the guest was saved',
             'blueprint "recover from stuck states"',
             suspend_guest_saved,
             label='bp stuck states: suspend, died after guest saved'),
    Scenario('shelve_offload_interrupted',
             'shelve offload, died after the guest was destroyed',
             'blueprint "recover from stuck states"',
             shelve_offload_interrupted,
             label='bp stuck states: shelve offload, guest destroyed'),
]


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
                   reboots=reboots, decision=base.decision(server))
