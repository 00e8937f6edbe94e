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
"""host_identity and an evacuation that is not over when its source
restarts.

On real nova 34 (libvirt driver over fakelibvirt), every guard enabled.
Server on A; A's nova-compute goes down (its hypervisor keeps the guest);
the server is evacuated to C; A's nova-compute comes back before C has
finished. The guard keeps A's copy, powered off, and leaves the evacuation
as it is (nova alone would mark it completed, remove A's allocation and
destroy the copy). Then:

* C finishes: A settles its copy without waiting for another restart, as
  nova's ``_destroy_evacuated_instances`` would;
* C fails the rebuild: the copy is left to nova and the operator;
* C dies, then restarts: C's recovery_table fails the evacuation as nova's
  rebuild failure path does, which it can only do because A left the
  migration open. Both restart orders.
"""

import json
import threading

import fixtures
from nova import context as nova_context
from nova import objects

from nova_guardrails.lab import harness
from nova_guardrails.lab import scenarios

A, C = 'hostA', 'hostC'
HOST_IDENTITY = 'nova_guardrails.guards.host_identity'


class _Evacuation(harness.GuardrailsTestBase):

    def setUp(self):
        super().setUp()
        # The re-check of a kept copy, fast for the tests.
        self.useFixture(fixtures.MonkeyPatch(
            HOST_IDENTITY + '.SETTLE_INTERVAL', 0.1))
        self.start_compute(A)
        self.start_compute(C)
        self.server = self._create_server(networks='none', host=A)

    def a_goes_down(self):
        conn = self.stop_compute(A)
        scenarios.force_down(self, A)
        return conn

    def evacuate(self):
        self.admin_api.post_server_action(self.server['id'],
                                          {'evacuate': {}})

    def migration(self, server=None):
        ctxt = nova_context.get_admin_context()
        [migration] = objects.MigrationList.get_by_filters(
            ctxt, {'instance_uuid': (server or self.server)['id'],
                   'migration_type': 'evacuation'})
        return migration

    def start_on(self, host, connection):
        """Start nova-compute ``host`` over ``connection`` with a report
        file of its own (in one process every service reads one CONF).
        """
        # An override, not use_nova_conf: its fixture's clean-up resets
        # every option, nova's test default manager_shutdown_timeout = 0
        # too, and the crashed service's unfinished task then holds its
        # clean-up for 140 s.
        self.flags(report_path=self.report_of(host), group='guardrails')
        return self.start_compute_on(host, connection)

    def report_of(self, host):
        return '%s/guardrails/%s.json' % (self.state_path, host)

    def decisions(self, guard='host_identity', host=A):
        return self.decisions_of(self.server, guard, host)

    def decisions_of(self, server, guard='host_identity', host=A):
        try:
            with open(self.report_of(host)) as f:
                rows = json.load(f)['decisions']
        except (OSError, ValueError):
            return []
        return [r for r in rows if r['guard'] == guard and
                r['instance_uuid'] == server['id']]

    def decision(self, action):
        rows = [r for r in self.decisions() if r['action'] == action]
        return rows[-1] if rows else None

    def allocation_hosts(self, server=None):
        providers = set(self._get_allocations_by_server_uuid(
            (server or self.server)['id']))
        return {host for host in (A, C)
                if self._get_provider_uuid_by_host(host) in providers}

    def restart_c(self):
        conn = self.stop_compute(C)
        self.start_on(C, conn)

    def hard_reboot(self):
        self.api.post_server_action(self.server['id'],
                                    {'reboot': {'type': 'HARD'}})
        return self._wait_for_state_change(self.server, 'ACTIVE')


class SourceBackWhileInProgressTest(_Evacuation):
    """The evacuation is slow on C (nova bug 2085975's situation)."""

    def setUp(self):
        super().setUp()
        self.spawning = threading.Event()
        self.go_on = threading.Event()
        self.spawn_fails = False
        original = harness.resolve(scenarios.LIBVIRT_DRIVER, 'spawn')

        def slow_spawn(driver, context, instance, *args, **kwargs):
            if (driver._host.get_connection().getHostname() == C and
                    instance.uuid == self.server['id']):
                self.spawning.set()
                self.go_on.wait(60)
                if self.spawn_fails:
                    raise RuntimeError('spawn failed on the destination')
            return original(driver, context, instance, *args, **kwargs)
        self.useFixture(fixtures.MonkeyPatch(
            scenarios.LIBVIRT_DRIVER + '.spawn', slow_spawn))
        self.addCleanup(self.go_on.set)
        self.shared_storage_asked = []
        self.spy('nova.compute.manager.ComputeManager',
                 '_is_instance_storage_shared',
                 lambda manager, context, instance, host=None:
                 self.shared_storage_asked.append((manager.host, host)))

    def a_back_during_the_rebuild(self):
        conn_a = self.a_goes_down()
        self.evacuate()
        self.assertTrue(self.spawning.wait(30))
        self.start_on(A, conn_a)
        return conn_a

    def test_copy_kept_and_evacuation_left_open(self):
        conn_a = self.a_back_during_the_rebuild()
        self.assertEqual('shutdown', self.guest_power_state_on(conn_a,
                                                               self.server))
        # nova alone marks it completed and removes A's allocation here.
        self.assertEqual('pre-migrating', self.migration().status)
        self.assertEqual({A, C}, self.allocation_hosts())
        self.assertEqual('power_off_keep',
                         self.decision('power_off_keep')['action'])

    def test_other_evacuations_cleaned_up_as_nova_does(self):
        """One evacuation finished while A was down, one still running when
        A comes back: the finished one is cleaned up at start-up with
        nova's steps (run by the guard, as nova's own method would also
        complete the running one), the running one is left open.
        """
        done = self._create_server(networks='none', host=A)
        conn_a = self.a_goes_down()
        self._evacuate_server(done, expected_host=C)
        self.evacuate()
        self.assertTrue(self.spawning.wait(30))
        self.start_on(A, conn_a)
        row = [r for r in self.decisions() if r['action'] == 'destroy']
        self.assertEqual([], row)
        [row] = [r for r in self.decisions_of(done)
                 if r['action'] == 'destroy']
        self.assertEqual(('guardrails', 'done'),
                         (row['executed_by'], row['outcome']))
        self.assertEqual('pending', self.guest_power_state_on(conn_a, done))
        self.assertEqual('completed', self.migration(done).status)
        self.assertEqual({C}, self.allocation_hosts(done))
        # The running one: untouched but powered off.
        self.assertEqual('shutdown', self.guest_power_state_on(conn_a,
                                                               self.server))
        self.assertEqual('pre-migrating', self.migration().status)
        self.assertEqual({A, C}, self.allocation_hosts())

    def test_finished_evacuation_settles_the_copy(self):
        conn_a = self.a_back_during_the_rebuild()
        self.go_on.set()
        self.wait_until(lambda: self.decision('destroy') is not None)
        row = self.decision('destroy')
        self.assertEqual(('guardrails', 'done'),
                         (row['executed_by'], row['outcome']), row)
        self.assertIn('evacuated to hostC', row['reason'])
        self.assertEqual('pending', self.guest_power_state_on(conn_a,
                                                              self.server))
        self.assertEqual('completed', self.migration().status)
        self.assertEqual({C}, self.allocation_hosts())
        # As nova's _destroy_evacuated_instances would: the destination
        # was asked whether the disks are shared (nova bug 2085975).
        self.assertIn((A, C), self.shared_storage_asked)
        server = self.api.get_server(self.server['id'])
        self.assertEqual(C, server['OS-EXT-SRV-ATTR:host'])
        self.assertNotEqual('ERROR', server['status'])
        self.assertNotEqual('pending', self.guest_power_state(C,
                                                              self.server))

    def test_failed_evacuation_leaves_the_copy(self):
        conn_a = self.a_back_during_the_rebuild()
        self.spawn_fails = True
        self.go_on.set()
        self.wait_until(lambda: self.decision('leave') is not None)
        row = self.decision('leave')
        self.assertIn('failed', row['reason'])
        self.assertEqual('shutdown', self.guest_power_state_on(conn_a,
                                                               self.server))
        self.assertEqual('failed', self.migration().status)
        # nova's own rebuild failure path on C (the fault is C's).
        server = self._wait_for_state_change(self.server, 'ERROR')
        self.assertEqual(A, server['OS-EXT-SRV-ATTR:host'])
        # The user's way back: a hard reboot on A.
        self.hard_reboot()
        self.assertEqual('running', self.guest_power_state_on(conn_a,
                                                              self.server))

    def test_no_guest_here_evacuation_still_left_open(self):
        """A's hypervisor lost the guest while A was down: nothing to keep,
        but the evacuation is not over either, so it is not completed.
        """
        conn_a = self.a_goes_down()
        dom = conn_a.lookupByUUIDString(self.server['id'])
        dom.destroy()
        dom.undefine()
        self.evacuate()
        self.assertTrue(self.spawning.wait(30))
        self.start_on(A, conn_a)
        self.assertEqual('keep_open', self.decision('keep_open')['action'])
        self.assertEqual('pre-migrating', self.migration().status)
        self.assertEqual({A, C}, self.allocation_hosts())
        self.go_on.set()
        self.wait_until(lambda: self.decision('complete') is not None)
        self.assertEqual('completed', self.migration().status)
        self.assertEqual({C}, self.allocation_hosts())

    def test_recheck_is_bounded_in_time(self):
        self.useFixture(fixtures.MonkeyPatch(
            HOST_IDENTITY + '.SETTLE_TIMEOUT', 0.5))
        conn_a = self.a_back_during_the_rebuild()
        self.wait_until(lambda: self.decision('keep') is not None)
        self.assertIn('not settled', self.decision('keep')['reason'])
        n = len(self.decisions())
        self.go_on.set()
        self._wait_for_migration_status(self.server, ['done'])
        # Nothing more is decided after the deadline: the next start-up
        # decides again.
        self.assertEqual(n, len(self.decisions()))
        self.assertEqual('shutdown', self.guest_power_state_on(conn_a,
                                                               self.server))

    def test_stopping_cancels_the_recheck(self):
        conn_a = self.a_back_during_the_rebuild()
        self.stop_compute(A)
        n = len(self.decisions())
        self.go_on.set()
        self._wait_for_migration_status(self.server, ['done'])
        self.assertEqual(n, len(self.decisions()))
        self.assertEqual('shutdown', self.guest_power_state_on(conn_a,
                                                               self.server))
        # The next start-up settles it, as nova would.
        self.start_on(A, conn_a)
        self.assertEqual('pending', self.guest_power_state_on(conn_a,
                                                              self.server))
        self.assertEqual('completed', self.migration().status)


class DestinationDiesTest(_Evacuation):
    """C dies during the rebuild (after its claim: the migration is
    pre-migrating, C's compute_rebuild_instance event started); both
    nova-computes come back, in either order. The end state is nova's
    rebuild failure path: server in ERROR on A, migration failed, only A's
    allocation, to be rebooted (or evacuated) again.
    """

    def setUp(self):
        super().setUp()
        self.conn_a = self.a_goes_down()
        crashed = self.crash_at(scenarios.LIBVIRT_DRIVER, 'spawn',
                                when='before')
        self.evacuate()
        self.wait_for_crash(crashed)
        self.assertEqual('pre-migrating', self.migration().status)

    def assertFailedEvacuation(self):
        self.wait_until(lambda: self.migration().status == 'failed')
        # No instance fault: C's recovery records none (nova's rebuild
        # failure path would, through wrap_instance_fault).
        server = self._wait_for_state_change(self.server, 'ERROR',
                                             wait_for_fault_key=False)
        self.assertEqual((A, None),
                         (server['OS-EXT-SRV-ATTR:host'],
                          server['OS-EXT-STS:task_state']))
        self.assertEqual('pending', self.guest_power_state(C, self.server))
        self.assertEqual({A}, self.allocation_hosts())

    def test_source_first(self):
        self.start_on(A, self.conn_a)
        self.assertEqual('shutdown', self.guest_power_state_on(
            self.conn_a, self.server))
        # Left open by A (nova alone: completed, and C's recovery never
        # finds it: the server stays ACTIVE/rebuilding with its only guest
        # off).
        self.assertEqual('pre-migrating', self.migration().status)
        self.restart_c()
        self.assertFailedEvacuation()
        self.wait_until(lambda: self.decision('leave') is not None)
        self.assertEqual('shutdown', self.guest_power_state_on(
            self.conn_a, self.server))
        self.hard_reboot()
        self.assertEqual('running', self.guest_power_state_on(
            self.conn_a, self.server))

    def test_destination_first(self):
        self.restart_c()
        self.assertFailedEvacuation()
        self.start_on(A, self.conn_a)
        # The failed evacuation is not one nova's clean-up reads: A's
        # guest, never stopped, runs on.
        self.assertEqual([], [r for r in self.decisions()
                              if r['action'] != 'report'])
        self.assertEqual('running', self.guest_power_state_on(
            self.conn_a, self.server))
        self.hard_reboot()
        self.assertEqual('running', self.guest_power_state_on(
            self.conn_a, self.server))
