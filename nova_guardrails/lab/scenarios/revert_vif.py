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
"""Scenario of the revert_vif guard: a resize revert's vif wait (nova
bug 1450624; also 1788403, 1832028, 1952003).

A server with a neutron port on compute1 is resized to compute2 (the disk
copy stubbed: :func:`~nova_guardrails.lab.scenarios.base.fake_disk_migration`),
neutron's agents simulated over nova's NeutronFixture
(:class:`~nova_guardrails.lab.harness.NeutronAgents`), vif waits on
(``vif_plugging_timeout`` 3 s, fatal). Before the revert's wait the old
host's agent has set the port DOWN and the binding update that moves it
back is lost (:func:`make_revert_race`): nova alone waits for a
network-vif-plugged event that cannot come and sets the server to ERROR.
:func:`run_revert_race` returns a :class:`RevertOutcome` (seconds: wall
time of the revert).
"""

import dataclasses

from nova_guardrails.lab.scenarios import base

Scenario = base.Scenario


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
    agents = test.useFixture(base.harness().NeutronAgents(test))
    base.fake_disk_migration(test)
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
        [d for d in base.decisions() if d['guard'] == 'revert_vif'])


SCENARIOS = [
    Scenario('revert_port_bound_elsewhere',
             'resize revert, port DOWN and still bound to the other host',
             'nova bug 1450624', run=run_revert_race,
             label='bug 1450624: resize revert, port bound elsewhere'),
]
