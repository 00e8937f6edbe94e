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
"""Regression test for nova bug 1450624: a resize revert waits for a
network-vif-plugged event that cannot come.

https://bugs.launchpad.net/nova/+bug/1450624

On a resize revert, ``ComputeManager.finish_revert_resize`` moves the port
bindings back to the source host (``migrate_instance_finish``), then the
libvirt driver's ``finish_revert_migration`` waits for network-vif-plugged
for every port whose status is not ACTIVE. neutron sends that event only for
a port bound to the host where the vif is plugged. In the field the binding
update was lost or raced and the port stayed bound to the destination,
DOWN: no event came, nova waited ``[DEFAULT] vif_plugging_timeout`` (300 s)
and, with ``vif_plugging_is_fatal``, put the server in ERROR
(VirtualInterfaceCreateException). nova 34 still never checks that a port it
is about to wait for is bound to this host.

nova's NeutronFixture with neutron's agents simulated, the race made
deterministic: the binding update nova makes is lost and the port set DOWN
(vif_plugging_timeout 3 s here). Guarded, the revert_vif guard reads the
ports the driver would wait for, rebinds the one bound to the other host,
verifies the rebind, and the driver then waits for an event that comes: the
revert finishes ACTIVE on the source, well within the timeout.
"""

from functional import test_revert_vif
from nova_guardrails.lab import harness
from nova_guardrails.lab import scenarios

TIMEOUT = test_revert_vif.TIMEOUT


class GuardedRevertTest(test_revert_vif._Base):

    def test_bug_1450624_port_bound_elsewhere(self):
        scenarios.make_revert_race(self, self.port_id, self.agents)
        server, seconds = self.revert()
        self.assertEqual(('ACTIVE', 'compute1'),
                         (server['status'], server['OS-EXT-SRV-ATTR:host']))
        self.assertEqual('compute1', self.port_host())
        self.assertLess(seconds, TIMEOUT)
        [decision] = self.decisions()
        self.assertEqual(('rebind', 'done'),
                         (decision['action'], decision['outcome']))
        self.assertEqual({'method': 'finish_revert_migration',
                          'port': self.port_id, 'binding_host': 'compute2',
                          'binding_host_after': 'compute1',
                          'status_after': 'DOWN'}, decision['details'])
        # The driver still waited for the event, which came once the port
        # was bound here: a real plug check, not a skipped one.
        self.assertEqual(1, len(self.plugged_events()))


class NovaAloneRevertTest(test_revert_vif._Base):
    NOVA_CONF = harness.NOVA_ALONE_CONF

    def test_bug_1450624_port_bound_elsewhere(self):
        scenarios.make_revert_race(self, self.port_id, self.agents)
        server, seconds = self.revert()
        self.assertEqual('ERROR', server['status'])
        self.assertIn('Virtual Interface creation failed',
                      server['fault']['message'])
        self.assertGreaterEqual(seconds, TIMEOUT)
        self.assertEqual('compute2', self.port_host())
        self.assertEqual([], self.plugged_events())
