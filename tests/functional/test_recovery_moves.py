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
"""Moves whose instance no start-up of its host looks at, on real nova 34.

* An evacuation whose destination died mid-rebuild: nova 34 records the
  instance on the destination only when the rebuild has finished
  (ResourceTracker.finish_evacuation), so it stays recorded on the dead
  source.
* An unshelve of an offloaded instance that died before its claim recorded
  the host: the instance has no host at all.
"""

from nova.compute import task_states
from nova import context as nova_context
from nova import objects

from nova_guardrails.lab import harness
from nova_guardrails.lab import scenarios

SOURCE, DEST = 'compute1', 'compute2'


class _Evacuation(harness.GuardrailsTestBase):

    def evacuate_and_crash(self):
        """Boot on compute1; compute1's host dies (its guest with it);
        evacuate to compute2, which dies after saving rebuild_spawning.
        """
        self.start_compute(SOURCE)
        self.start_compute(DEST)
        server = self._create_server(networks='none', host=SOURCE)
        self.source_conn = self.computes[SOURCE].driver._host\
            .get_connection()
        self.computes[SOURCE].stop()
        self.source_conn.lookupByUUIDString(server['id']).destroy()
        service = self.admin_api.get_services(binary='nova-compute',
                                              host=SOURCE)[0]
        self.admin_api.put_service_force_down(service['id'], True)
        crashed = self.crash_at_task_state(task_states.REBUILD_SPAWNING,
                                           when='after')
        self.api.post_server_action(server['id'], {'evacuate': {}})
        self.wait_for_crash(crashed)
        self.restart_compute_service(DEST)
        return server

    def migration(self, server):
        ctxt = nova_context.get_admin_context()
        [migration] = objects.MigrationList.get_by_filters(
            ctxt, {'instance_uuid': server['id']})
        return migration

    def providers(self, server):
        names = {self._get_provider_uuid_by_host(h): h
                 for h in (SOURCE, DEST)}
        return sorted(names[rp] for rp in
                      self._get_allocations_by_server_uuid(server['id']))

    def revive_source(self):
        self.restart_compute_service(SOURCE)


class GuardedEvacuationTest(_Evacuation):
    NOVA_CONF = harness.GUARDED_NOVA_CONF

    def test_interrupted_evacuation_fails_as_nova_would(self):
        server = self.evacuate_and_crash()
        instance = self.instance(server)
        self.assertEqual(('error', None, SOURCE),
                         (instance.vm_state, instance.task_state,
                          instance.host))
        self.assertEqual('failed', self.migration(server).status)
        self.assertEqual([SOURCE], self.providers(server))
        self.assertIsNone(self.domain(DEST, server))
        self.assertEqual(('fail_evacuation', 'guardrails', 'done'), tuple(
            scenarios.decision(server)[k]
            for k in ('action', 'executed_by', 'outcome')))
        # The server says why, as after nova's own rebuild failure.
        self.assertIn('nova-guardrails recovery_table: evacuation from',
                      self.api.get_server(server['id'])['fault']['message'])
        # The source comes back: its guest is kept (the evacuation failed),
        # and a hard reboot brings the server back there.
        self.revive_source()
        self.assertIsNotNone(self.domain(SOURCE, server))
        self.assertEqual([SOURCE], self.providers(server))
        self._reboot_server(server, hard=True)
        self.assertEqual(('active', None, 'running'),
                         self.server_states(server))
        self.assertEqual('running', self.guest_power_state(SOURCE, server))


class NovaAloneEvacuationTest(_Evacuation):
    NOVA_CONF = harness.NOVA_ALONE_CONF

    def test_interrupted_evacuation_stays_stuck(self):
        server = self.evacuate_and_crash()
        instance = self.instance(server)
        self.assertEqual(('active', 'rebuild_spawning', SOURCE),
                         (instance.vm_state, instance.task_state,
                          instance.host))
        self.assertEqual([SOURCE, DEST], self.providers(server))
        # The source comes back and destroys its guest, as if the
        # evacuation had succeeded: the instance has no guest left on the
        # host it is recorded on.
        self.revive_source()
        self.assertIsNone(self.domain(SOURCE, server))
        self.assertEqual(SOURCE, self.instance(server).host)


class _Unshelve(harness.GuardrailsTestBase):

    def unshelve_and_crash(self):
        self.flags(shelved_offload_time=0)
        self.start_compute(SOURCE)
        server = self._create_server(networks='none', host=SOURCE)
        self.api.post_server_action(server['id'], {'shelve': None})
        self._wait_for_state_change(server, 'SHELVED_OFFLOADED')
        crashed = self.crash_at_task_state(task_states.SPAWNING,
                                           when='after')
        self.api.post_server_action(server['id'], {'unshelve': None})
        self.wait_for_crash(crashed)
        self.restart_compute_service(SOURCE)
        return server


class GuardedUnshelveTest(_Unshelve):
    NOVA_CONF = harness.GUARDED_NOVA_CONF

    def test_interrupted_unshelve_is_offloaded_again(self):
        server = self.unshelve_and_crash()
        instance = self.instance(server)
        self.assertEqual(('shelved_offloaded', None, None),
                         (instance.vm_state, instance.task_state,
                          instance.host))
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
        self.assertEqual('clear_unshelve',
                         scenarios.decision(server)['action'])
        self.api.post_server_action(server['id'], {'unshelve': None})
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('running', self.guest_power_state(SOURCE, server))


class NovaAloneUnshelveTest(_Unshelve):
    NOVA_CONF = harness.NOVA_ALONE_CONF

    def test_interrupted_unshelve_stays_stuck(self):
        server = self.unshelve_and_crash()
        instance = self.instance(server)
        self.assertEqual(('shelved_offloaded', 'spawning', None),
                         (instance.vm_state, instance.task_state,
                          instance.host))
        self.assertNotEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
