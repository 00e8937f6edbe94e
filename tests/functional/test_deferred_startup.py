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
"""An instance whose request is still queued goes through nova's start-up
path of a stable instance all the same.

recovery_table leaves an instance whose request may still be queued alone
for ``[guardrails] queued_grace_seconds``. Its task_state is left alone; the
rest of nova's start-up must still run for it: after a host reboot nova
plugs its VIFs and, with ``resume_guests_state_on_host_boot``, starts a
guest that was running. Without that, the guest stays off and nova's
power-state sync later records the instance stopped.
"""

import fixtures

from nova_guardrails.lab import harness
from nova_guardrails.lab import scenarios

DRIVER = scenarios.LIBVIRT_DRIVER
HOST = scenarios.HOST


class DeferredAfterHostRebootTest(harness.GuardrailsTestBase):
    NOVA_CONF = harness.GUARDED_NOVA_CONF + (
        'queued_grace_seconds = 120\n'
        '[DEFAULT]\nresume_guests_state_on_host_boot = true\n')

    def test_queued_request_guest_resumed_after_host_reboot(self):
        server = scenarios.boot(self)
        # A reboot accepted while nova-compute is down: its cast waits.
        from nova.compute import rpcapi
        held = []
        self.useFixture(fixtures.MonkeyPatch(
            'nova.compute.rpcapi.ComputeAPI.reboot_instance',
            lambda *a, **kw: held.append((a, kw))))
        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'SOFT'}})
        self.assertEqual(1, len(held))
        # The host reboots: every guest is off when nova-compute starts.
        conn = self.computes[HOST].driver._host.get_connection()
        conn.lookupByUUIDString(server['id']).destroy()
        self.assertEqual('shutdown', self.guest_power_state(HOST, server))
        plugged = []
        self.spy(DRIVER, 'plug_vifs',
                 lambda driver, instance, *a: plugged.append(instance.uuid))
        self.restart_compute_service(HOST)
        # The request is still deferred (well inside the grace period)...
        self.assertEqual(('active', 'rebooting'),
                         self.server_states(server)[:2])
        # ... and nova's start-up path ran for it: VIFs plugged, the guest
        # that was running started again.
        self.assertIn(server['id'], plugged)
        self.assertEqual('running', self.guest_power_state(HOST, server))
        # The queued reboot is then delivered and runs, once.
        del rpcapi
