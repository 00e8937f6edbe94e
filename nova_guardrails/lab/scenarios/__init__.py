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
import os

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
    :ivar source: the upstream nova bug or blueprint it comes from.
    :ivar crash: ``f(test) -> server``: boot, operate, crash.
    :ivar restart_fault: optional ``f(test)`` run before the restart, to
        make the hypervisor fail during start-up.
    :ivar run: optional ``f(test, scenario) -> outcome`` replacing
        :func:`crash_and_restart` (the host scenarios).
    :ivar label: the upstream bug and a short description, for the lab's
        one-line-per-scenario table (at most 53 characters: the
        table truncates a longer one to fit 120 columns).
    """

    name: str
    title: str
    source: str
    crash: object = None
    restart_fault: object = None
    run: object = None
    label: str = ''

    def outcome(self, test):
        return (self.run or crash_and_restart)(test, self)


#: vm_state -> the guest power states consistent with it (the crash
#: matrix's and the lab's "recovered").
GUEST_OF_VM_STATE = {
    'active': ('running',),
    'stopped': ('shutdown', 'pending'),
    'paused': ('paused',),
    'suspended': ('shutdown',),
    'rescued': ('running',),
    'resized': ('running', 'shutdown'),
    'soft-delete': ('shutdown', 'pending'),
    'shelved': ('shutdown',),
    'shelved_offloaded': ('pending',),
}


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
        expected = GUEST_OF_VM_STATE
        if self.guest_after in expected.get(vm_state, ()):
            return 'recovered'
        return 'stuck'


def boot(test):
    test.start_compute(HOST)
    return test._create_server(networks='none')


def _interrupt(test, server, crashed, action):
    """Ask nova-api for ``action`` on ``server``; wait until nova-compute
    dies at the crash point ``crashed`` (from ``test.crash_at...``).
    """
    test.api.post_server_action(server['id'], action)
    test.wait_for_crash(crashed)
    return server


def _reboot(kind):
    return {'reboot': {'type': kind}}


def soft_reboot_guest_off(test):
    server = boot(test)
    return _interrupt(test, server, test.crash_at(DOMAIN, 'shutdown'),
                      _reboot('SOFT'))


def soft_reboot_guest_running(test):
    server = boot(test)
    return _interrupt(
        test, server, test.crash_at(DOMAIN, 'shutdown', when='before'),
        _reboot('SOFT'))


def _stopped_server(test):
    server = boot(test)
    test._stop_server(server)
    return server


def hard_reboot_rebooting_hard(test):
    """Stopped server, hard reboot; dies before acknowledging it."""
    server = _stopped_server(test)
    return _interrupt(test, server, test.crash_at_task_state(
        task_states.REBOOT_PENDING_HARD), _reboot('HARD'))


def hard_reboot_pending_hard(test):
    """Stopped server, hard reboot acknowledged; dies before the driver."""
    server = _stopped_server(test)
    return _interrupt(test, server, test.crash_at_task_state(
        task_states.REBOOT_STARTED_HARD), _reboot('HARD'))


def hard_reboot_started_hard(test):
    """Active server, hard reboot; dies after the guest was destroyed."""
    server = boot(test)
    return _interrupt(test, server, test.crash_at(DOMAIN, 'destroy'),
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
    return _interrupt(test, server, test.crash_at(DOMAIN, 'destroy'),
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
    return _interrupt(test, server, test.crash_at_task_state(
        task_states.REBOOT_STARTED), _reboot('SOFT'))


def stop_before_driver(test):
    """Stop (powering-off); dies before the driver powers the guest off."""
    server = boot(test)
    return _interrupt(
        test, server, test.crash_at(LIBVIRT_DRIVER, 'power_off',
                                    when='before'), {'os-stop': None})


def suspend_before_driver(test):
    """Suspend (suspending); dies before the driver suspends the guest."""
    server = boot(test)
    return _interrupt(
        test, server, test.crash_at(LIBVIRT_DRIVER, 'suspend',
                                    when='before'), {'suspend': None})


def suspend_guest_saved(test):
    """Suspend; dies after the driver saved the guest, before recording
    it (blueprint "recover from stuck states": a task_state nova 34
    leaves stuck).
    """
    server = boot(test)
    return _interrupt(
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
    return _interrupt(
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


# Host identity (nova bug 1419785) --------------------------------------------

A, B, C = 'hostA', 'hostB', 'hostC'


def boot_on(test, host, count=1):
    return [test._create_server(networks='none', host=host)
            for _ in range(count)]


def standby_history(test):
    """A starts; the standby B starts once over A's hypervisor while it is
    empty (nova alone allows it); A runs two guests and dies. Runs with
    nova alone: the past before nova-guardrails. Returns (servers,
    hypervisor).
    """
    test.use_nova_conf(_harness().NOVA_ALONE_CONF)
    test.start_compute(A)
    connection = test.stop_compute(A)
    test.start_compute_on(B, connection)
    test.stop_compute(B)
    test.start_compute_on(A, connection)
    servers = boot_on(test, A, 2)
    connection = test.stop_compute(A)
    test.use_nova_conf(test.NOVA_CONF)
    return servers, connection


def force_down(test, host, down=True):
    [service] = test.admin_api.get_services(binary='nova-compute',
                                            host=host)
    test.admin_api.put_service_force_down(service['id'], down)


def evacuate_while_down(test, count=1, crash_destination=False):
    """Servers on A; A goes down; they are evacuated to C (C dies before
    rebuilding them when ``crash_destination``). Returns (servers, A's
    hypervisor).
    """
    test.start_compute(A)
    test.start_compute(C)
    servers = boot_on(test, A, count)
    connection = test.stop_compute(A)
    force_down(test, A)
    if crash_destination:
        crashed = test.crash_at('nova.compute.manager.ComputeManager',
                                'rebuild_instance', when='before')
        for server in servers:
            test.admin_api.post_server_action(server['id'],
                                              {'evacuate': {}})
        test.wait_for_crash(crashed)
    else:
        for server in servers:
            test._evacuate_server(server, expected_host=C)
    return servers, connection


@dataclasses.dataclass
class HostOutcome:
    """What starting a nova-compute made of a hypervisor's guests."""

    situation_text: str
    started: bool
    start_error: str | None
    guests: dict
    compute_nodes: int
    decisions: list
    lost: bool

    def situation(self):
        return self.situation_text

    def cell(self, guarded):
        text = ('started' if self.started else 'REFUSED to start')
        text += '\nguests: %s' % ', '.join(
            '%d %s' % (n, 'gone' if state == 'pending' else state)
            for state, n in sorted(_count(self.guests.values()).items()))
        text += '\ncompute nodes of the hypervisor: %d' % self.compute_nodes
        if guarded and self.decisions:
            text += '\nactions: %s' % ', '.join(sorted(
                {d['action'] for d in self.decisions}))
        return text

    @property
    def verdict(self):
        if self.lost:
            return 'guest destroyed'
        if not self.started:
            return 'refused, guests intact'
        if self.compute_nodes > 1:
            return 'started on a hypervisor registered twice'
        if any(d['action'] == 'power_off_keep' for d in self.decisions):
            return 'guest kept, powered off'
        return 'ok'

    def as_dict(self):
        return dataclasses.asdict(self) | {'verdict': self.verdict}


def _count(values):
    counts = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _harness():
    from nova_guardrails.lab import harness
    return harness


def _start(test, host, connection):
    try:
        test.start_compute_on(host, connection)
        return True, None
    except Exception as error:
        return False, '%s: %s' % (type(error).__name__, error)


def _decisions():
    if not hasattr(CONF, 'guardrails'):
        return []
    try:
        with open(CONF.guardrails.report_path) as f:
            return json.load(f)['decisions']
    except OSError:
        return []


def run_standby(test, scenario):
    servers, connection = standby_history(test)
    started, error = _start(test, B, connection)
    guests = {s['id']: test.guest_power_state_on(connection, s)
              for s in servers}
    return HostOutcome(
        'A (2 guests) died; standby B (registered over A\'s hypervisor '
        'earlier, without guardrails) starts', started, error, guests,
        len(test.compute_nodes(A)), _decisions(), lost=False)


def run_evacuation(test, scenario):
    servers, connection = evacuate_while_down(test, crash_destination=True)
    started, error = _start(test, A, connection)
    guests = {s['id']: test.guest_power_state_on(connection, s)
              for s in servers}
    return HostOutcome(
        'guest evacuated to C while A was down; C died before rebuilding '
        'it (migration accepted); A restarts',
        started, error, guests, len(test.compute_nodes(A)),
        _decisions(), lost='pending' in guests.values())


HOST_SCENARIOS = [
    Scenario('standby_over_guests',
             'HA standby B starts over host A\'s hypervisor',
             'nova bug 1419785', run=run_standby,
             label='bug 1419785: HA standby B starts over A\'s guests'),
    Scenario('evacuation_destination_died',
             'evacuated while down, destination died; source restarts',
             'nova bug 1419785 (destroy on evidence)',
             run=run_evacuation,
             label='bug 1419785: evacuated while down, destination died'),
]
SCENARIOS = SCENARIOS + HOST_SCENARIOS
BY_NAME.update({s.name: s for s in HOST_SCENARIOS})


# Resize revert and vif-plugged events (nova bug 1450624) ---------------------

def fake_disk_migration(test):
    # Disks move between hosts over SSH in the libvirt driver; the fake
    # hosts here share one process and nova's own libvirt resize tests stub
    # the copy the same way. The guest is powered off, as the real method
    # does before copying.
    def migrate_disk_and_power_off(driver, context, instance, *args,
                                   **kwargs):
        driver.power_off(instance)
        return '{}'
    test.useFixture(fixtures.MonkeyPatch(
        LIBVIRT_DRIVER + '.migrate_disk_and_power_off',
        migrate_disk_and_power_off))


# The name the tests used before; removed once they use the public one.
_fake_disk_migration = fake_disk_migration


def _heal_info_cache(test, server):
    # With the libvirt driver over NeutronFixture the info cache written at
    # boot can be empty; nova's own refresh rebuilds it from neutron.
    from nova import context as nova_context
    from nova.network import neutron as neutron_api
    from nova import objects
    ctxt = nova_context.get_admin_context()
    mapping = objects.InstanceMapping.get_by_instance_uuid(ctxt, server['id'])
    with nova_context.target_cell(ctxt, mapping.cell_mapping) as cctxt:
        instance = objects.Instance.get_by_uuid(cctxt, server['id'])
        neutron_api.API().get_instance_nw_info(cctxt, instance,
                                               force_refresh=True)


def server_with_port(test, timeout=3):
    """A server with a port on compute1 (compute2 up too), neutron's agents
    simulated, vif waits on. Returns (server, port id, agents).
    """
    agents = test.useFixture(_harness().NeutronAgents(test))
    fake_disk_migration(test)
    test.flags(allow_resize_to_same_host=False)
    test.start_compute('compute1')
    test.start_compute('compute2')
    port_id = test.neutron.port_1['id']
    server = test._create_server(networks=[{'port': port_id}],
                                 host='compute1')
    _heal_info_cache(test, server)
    # NeutronFixture turns the waits off; the revert race (nova bug 1450624)
    # needs them on.
    test.flags(vif_plugging_timeout=timeout, vif_plugging_is_fatal=True)
    return server, port_id, agents


def resized_with_port(test, timeout=3):
    """:func:`server_with_port`, resized to compute2, not yet confirmed."""
    server, port_id, agents = server_with_port(test, timeout)
    return test._resize_server(server, '2'), port_id, agents


def make_revert_race(test, port_id, agents):
    """Before the revert's wait: the old host's agent has set the port
    DOWN, and the binding update that moves it back is lost.
    """
    test.neutron._ports[port_id]['status'] = 'DOWN'
    agents.lose = 1


@dataclasses.dataclass
class RevertOutcome:
    """What a resize revert ended in."""

    situation_text: str
    status: str
    host: str
    task_state: str | None
    fault: str | None
    seconds: float
    port_host: str
    decisions: list

    def situation(self):
        return self.situation_text

    def cell(self, guarded):
        text = '%s on %s, port bound to %s\nrevert took %.1f s' % (
            self.status, self.host, self.port_host, self.seconds)
        if self.fault:
            text += '\nfault: %s' % self.fault[:60]
        if guarded and self.decisions:
            text += '\nactions: %s' % ', '.join(
                d['action'] for d in self.decisions)
        return text

    @property
    def verdict(self):
        if self.status == 'ACTIVE' and self.host == 'compute1':
            return 'reverted'
        return 'server %s' % self.status

    def as_dict(self):
        return dataclasses.asdict(self) | {'verdict': self.verdict}


def revert(test, server):
    """Revert the resize; wait until it settles. Returns (server, s)."""
    import time
    started = time.monotonic()
    test.api.post_server_action(server['id'], {'revertResize': None})
    test.wait_until(lambda: test.api.get_server(server['id'])['status']
                    in ('ACTIVE', 'ERROR'), timeout=60)
    return test.api.get_server(server['id']), time.monotonic() - started


def run_revert_race(test, scenario):
    server, port_id, agents = resized_with_port(test)
    make_revert_race(test, port_id, agents)
    server, seconds = revert(test, server)
    return RevertOutcome(
        'resized to compute2; before the revert\'s wait the port is DOWN '
        'and still bound to compute2 (vif_plugging_timeout 3 s, fatal)',
        server['status'], server['OS-EXT-SRV-ATTR:host'],
        server['OS-EXT-STS:task_state'],
        server.get('fault', {}).get('message'), seconds,
        test.neutron.show_port(port_id)['port']['binding:host_id'],
        [d for d in _decisions() if d['guard'] == 'revert_vif'])


REVERT_SCENARIOS = [
    Scenario('revert_port_bound_elsewhere',
             'resize revert, port DOWN and still bound to the other host',
             'nova bug 1450624', run=run_revert_race,
             label='bug 1450624: resize revert, port bound elsewhere'),
]
SCENARIOS = SCENARIOS + REVERT_SCENARIOS
BY_NAME.update({s.name: s for s in REVERT_SCENARIOS})


# RBD root disks (nova bug 1419785's evacuation case) -------------------------

_CLUSTER = []
# The temporary directory before nova's test fixtures point it at each test
# case's own (removed when the case ends).
_TMP = __import__('tempfile').gettempdir()


def ceph_cluster():
    """The lab's throwaway Ceph cluster, started on first use, stopped at
    exit.
    """
    if not _CLUSTER:
        import atexit
        from nova_guardrails.lab import ceph
        cluster = ceph.Cluster(base_dir=_TMP)
        cluster.start()
        atexit.register(cluster.stop)
        _CLUSTER.append(cluster)
    return _CLUSTER[0]


def use_rbd(test, cluster):
    test.flags(images_type='rbd', images_rbd_pool=cluster.pool,
               images_rbd_ceph_conf=cluster.conf, group='libvirt')


def evacuate_to_failing_host(test, write_image, force_old_cleanup=False):
    """A server on A with its root disk <uuid>_disk in the pool (written by
    ``write_image(name) -> bytes``, as spawn would); A goes down; it is
    evacuated to C, where creating the guest fails. Returns (server, root
    image name, its bytes).
    """
    test.start_compute(A)
    test.start_compute(C)
    [server] = boot_on(test, A)
    root = '%s_disk' % server['id']
    data = write_image(root)
    test.stop_compute(A)
    force_down(test, A)

    def guest_creation_fails(*args, **kwargs):
        from nova.tests.fixtures import libvirt as fakelibvirt
        raise fakelibvirt.make_libvirtError(
            fakelibvirt.libvirtError,
            'Cannot allocate memory (memory overcommit)',
            error_code=fakelibvirt.VIR_ERR_INTERNAL_ERROR)
    test.useFixture(fixtures.MonkeyPatch(DOMAIN + '.createWithFlags',
                                         guest_creation_fails))
    if force_old_cleanup:
        # Before nova 22, and still whenever spawn created any disk
        # (created_disks is one boolean for root, ephemeral and swap), the
        # failed spawn's clean-up includes the instance's rbd images.
        test.useFixture(fixtures.MonkeyPatch(
            LIBVIRT_DRIVER + '._create_image',
            lambda *args, **kwargs: (False, True)))
    test.admin_api.post_server_action(server['id'], {'evacuate': {}})
    test._wait_for_server_parameter(server, {'status': 'ERROR'})
    return server, root, data


@dataclasses.dataclass
class DiskOutcome:
    situation_text: str
    root_intact: bool | None
    decisions: list
    note: str | None = None

    def situation(self):
        return self.situation_text

    def cell(self, guarded):
        if self.root_intact is None:
            return 'not run: %s' % self.note
        text = ('root disk intact (byte-identical)' if self.root_intact
                else 'ROOT DISK DELETED from the pool')
        if guarded and self.decisions:
            text += '\nactions: %s' % ', '.join(
                d['action'] for d in self.decisions)
        return text

    @property
    def verdict(self):
        if self.root_intact is None:
            return 'not run'
        return 'data intact' if self.root_intact else 'data lost'

    def as_dict(self):
        return dataclasses.asdict(self) | {'verdict': self.verdict}


def run_rbd_evacuation(test, scenario):
    from nova_guardrails.lab import ceph
    situation = ('evacuation to a host where creating the guest fails; '
                 'the failed spawn cleans up its disks (created_disks, '
                 'forced); root disk in a real Ceph pool')
    lacking = ceph.missing()
    if lacking:
        return DiskOutcome(situation, None, [],
                           'Ceph not installed (%s)' % ', '.join(lacking))
    cluster = ceph_cluster()
    use_rbd(test, cluster)
    import rados
    import rbd
    client = rados.Rados(conffile=cluster.conf)
    client.connect(timeout=10)
    try:
        ioctx = client.open_ioctx(cluster.pool)

        def write_image(name, size=1024 * 1024):
            data = os.urandom(size)
            rbd.RBD().create(ioctx, name, size)
            with rbd.Image(ioctx, name) as image:
                image.write(data, 0)
            return data
        server, root, data = evacuate_to_failing_host(
            test, write_image, force_old_cleanup=True)
        intact = False
        if root in rbd.RBD().list(ioctx):
            with rbd.Image(ioctx, root) as image:
                intact = image.read(0, image.size()) == data
        ioctx.close()
    finally:
        client.shutdown()
    return DiskOutcome(situation, intact,
                       [d for d in _decisions()
                        if d['guard'] == 'rbd_root_disk'])


RBD_SCENARIOS = [
    Scenario('evacuation_spawn_fails_rbd',
             'evacuation whose spawn fails, root disk on Ceph',
             'nova bug 1419785 (evacuation case)', run=run_rbd_evacuation,
             label='bug 1419785: evacuation spawn fails, root disk rbd'),
]
SCENARIOS = SCENARIOS + RBD_SCENARIOS
BY_NAME.update({s.name: s for s in RBD_SCENARIOS})
