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
"""Scenarios of the host_identity guard (nova bug 1419785).

Three hosts over fakelibvirt: A, B (an HA standby configured with another
``[DEFAULT] host`` over A's hypervisor) and C (an evacuation destination).
:func:`run_standby`: the standby starts over A's guests; nova alone
registers the hypervisor's node twice, guarded it refuses to start.
:func:`run_evacuation`: A's guests are evacuated while A is down and C
dies before rebuilding them; when A comes back nova alone destroys them as
evacuated (``ComputeManager._destroy_evacuated_instances``), guarded keeps
them powered off. Each returns a :class:`HostOutcome`; guests are power
state names, ``'pending'`` for a guest gone from the hypervisor.
"""

import dataclasses

from nova_guardrails.lab.scenarios import base

Scenario = base.Scenario

#: A: the host whose guests are at stake; B: its HA standby over the same
#: hypervisor; C: an evacuation destination.
A, B, C = 'hostA', 'hostB', 'hostC'


def boot_on(test, host, count=1):
    """Boot ``count`` servers (no network) on ``host``; their API dicts."""
    return [test._create_server(networks='none', host=host)
            for _ in range(count)]


def standby_history(test):
    """A starts; the standby B starts once over A's hypervisor while it is
    empty (nova alone allows it); A runs two guests and dies. Runs with
    nova alone: the past before nova-guardrails. Returns (servers,
    hypervisor).
    """
    test.use_nova_conf(base.harness().NOVA_ALONE_CONF)
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


def _start(test, host, connection):
    try:
        test.start_compute_on(host, connection)
        return True, None
    except Exception as error:
        return False, '%s: %s' % (type(error).__name__, error)


def run_standby(test, scenario):
    servers, connection = standby_history(test)
    started, error = _start(test, B, connection)
    guests = {s['id']: test.guest_power_state_on(connection, s)
              for s in servers}
    return HostOutcome(
        'A (2 guests) died; standby B (registered over A\'s hypervisor '
        'earlier, without guardrails) starts', started, error, guests,
        len(test.compute_nodes(A)), base.decisions(), lost=False)


def run_evacuation(test, scenario):
    servers, connection = evacuate_while_down(test, crash_destination=True)
    started, error = _start(test, A, connection)
    guests = {s['id']: test.guest_power_state_on(connection, s)
              for s in servers}
    return HostOutcome(
        'guest evacuated to C while A was down; C died before rebuilding '
        'it (migration accepted); A restarts',
        started, error, guests, len(test.compute_nodes(A)),
        base.decisions(), lost='pending' in guests.values())


SCENARIOS = [
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
