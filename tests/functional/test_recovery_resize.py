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
"""Resize task_states nova 34 leaves stuck, on real nova 34.

A server on compute1 (the source) is resized to compute2 (the
destination); nova-compute dies (a BaseException, harness.ComputeCrash) at a
crash point of the resize or of its revert, the compute services are
restarted keeping the fake hypervisor's domains, and the tests assert where
the server ends. Guarded (recovery_table, ``rollback_resize``) the resize is
rolled back to the source by nova's own revert: server active on the source
with its original flavor, guest running there and gone from the
destination, migration reverted, placement allocations only on the source
for the original flavor. Nova alone the instance stays stuck in its
task_state.
"""

import time

import fixtures
from nova.compute import task_states
from nova import context as nova_context
from nova import objects

import nova.conf

from nova_guardrails.lab import harness
from nova_guardrails.lab import scenarios

MANAGER = 'nova.compute.manager.ComputeManager'
DRIVER = scenarios.LIBVIRT_DRIVER
SOURCE = 'compute1'
DEST = 'compute2'
NEW_FLAVOR = '2'
CONF = nova.conf.CONF


class _Base(harness.GuardrailsTestBase):

    def setUp(self):
        super().setUp()
        scenarios.fake_disk_migration(self)
        self.flags(allow_resize_to_same_host=False)
        self.start_compute(SOURCE)
        self.start_compute(DEST)
        self.server = self._create_server(networks='none', host=SOURCE)
        self.old_flavor = self.server['flavor']
        self.source_rp = self._get_provider_uuid_by_host(SOURCE)
        self.dest_rp = self._get_provider_uuid_by_host(DEST)
        self.assertEqual('running', self.guest_power_state(SOURCE,
                                                           self.server))

    # Operations ------------------------------------------------------------

    def resize(self, crashed):
        """Resize the server to compute2; wait for the crash."""
        return scenarios.interrupt(
            self, self.server, crashed,
            {'resize': {'flavorRef': NEW_FLAVOR}})

    def resized(self):
        """The server resized to compute2, awaiting confirm or revert."""
        server = self._resize_server(self.server, NEW_FLAVOR)
        self.assertEqual(DEST, server['OS-EXT-SRV-ATTR:host'])
        return server

    def revert(self, crashed):
        """Revert the resize; wait for the crash."""
        return scenarios.interrupt(self, self.server, crashed,
                                   {'revertResize': None})

    def crash_in_finish_revert_resize(self):
        """Revert; the source dies in finish_revert_resize right after
        ``instance.save(expected_task_state=RESIZE_REVERTING)`` (guest
        restored, migration context dropped, host = source).
        """
        crashed = self.crash_at(
            'nova.objects.instance.Instance', 'save', when='after',
            condition=lambda instance, *a, **kw: (
                instance.task_state == task_states.RESIZE_REVERTING and
                instance.host == SOURCE and
                'launched_at' in instance.obj_what_changed()))
        # A kill -9 runs no ``finally``: finish_revert_resize's
        # _delete_stashed_flavor_info does not run either (the crash, a
        # BaseException, would run it).
        self.crash_at(MANAGER, '_delete_stashed_flavor_info', when='before')
        self.revert(crashed)

    def restart(self, *hosts):
        """Restart the compute services ``hosts``, in that order, keeping
        the hypervisors' domains. Returns (state before, decision).
        """
        at_crash = self.server_states(self.server)
        for host in hosts:
            self.restart_compute_service(host)
        return at_crash, scenarios.decision(self.server)

    # Facts -----------------------------------------------------------------

    def migration(self):
        ctxt = nova_context.get_admin_context()
        [migration] = objects.MigrationList.get_by_filters(
            ctxt, {'instance_uuid': self.server['id']})
        return migration

    def guests(self):
        """Power states of the guest on (source, destination)."""
        return (self.guest_power_state(SOURCE, self.server),
                self.guest_power_state(DEST, self.server))

    def wait_settled(self):
        """Wait until the server has no task_state."""
        self.wait_until(
            lambda: self.server_states(self.server)[1] is None, timeout=30)
        return self.api.get_server(self.server['id'])


class GuardedResizeRecoveryTest(_Base):
    NOVA_CONF = harness.GUARDED_NOVA_CONF

    def assertDecision(self, decision, action, task_state):
        self.assertIsNotNone(decision, 'no start-up report row')
        self.assertEqual((action, 'guardrails', 'done', task_state),
                         (decision['action'], decision['executed_by'],
                          decision['outcome'],
                          decision['before']['task_state']), decision)

    def assertRolledBack(self, wait_revert=True):
        """The resize is rolled back: the server runs on the source with
        its original flavor, migration reverted, allocations only there.
        Returns the server.
        """
        if wait_revert:
            self.notifier.wait_for_versioned_notifications(
                'instance.resize_revert.end')
        server = self.wait_settled()
        self.assertEqual(('ACTIVE', SOURCE, None),
                         (server['status'], server['OS-EXT-SRV-ATTR:host'],
                          server['OS-EXT-STS:task_state']))
        self.assertEqual(('active', None, 'running'),
                         self.server_states(server))
        self.assertEqual(self.old_flavor, server['flavor'])
        self.assertEqual(('running', 'pending'), self.guests())
        migration = self.migration()
        self.assertEqual('reverted', migration.status)
        instance = self.instance(server)
        self.assertEqual((SOURCE, SOURCE), (instance.host, instance.node))
        self.assertIsNone(instance.migration_context)
        self.assertIsNone(instance.old_flavor)
        self.assertIsNone(instance.new_flavor)
        self.assertNotIn('old_vm_state', instance.system_metadata)
        # Placement: the instance holds the original flavor on the source
        # only; nothing is left held by the migration.
        allocations = self._get_allocations_by_server_uuid(server['id'])
        self.assertEqual([self.source_rp], list(allocations))
        self.assertFlavorMatchesAllocation(self.old_flavor, server['id'],
                                           self.source_rp)
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            migration.uuid))
        self.assertEqual({}, self._get_allocations_by_provider_uuid(
            self.dest_rp))
        # The scheduler sees the original flavor again (as nova-api's
        # revert_resize leaves the RequestSpec).
        ctxt = nova_context.get_admin_context()
        spec = objects.RequestSpec.get_by_instance_uuid(ctxt, server['id'])
        self.assertEqual(self.old_flavor['original_name'], spec.flavor.name)
        return server

    def assertUsable(self, server):
        """The recovered server can be resized again, to compute2."""
        server = self._resize_server(server, NEW_FLAVOR)
        self.assertEqual(DEST, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(('shutdown', 'running'), self.guests())

    # resize_migrated -------------------------------------------------------

    # resize_finish ---------------------------------------------------------

    def test_resize_finish_before_driver(self):
        """The destination saved resize_finish (new flavor recorded) and
        died before the driver created the guest.
        """
        self.resize(self.crash_at_task_state(task_states.RESIZE_FINISH,
                                             when='after'))
        self.assertEqual(('shutdown', 'pending'), self.guests())
        at_crash, decision = self.restart(DEST)
        self.assertEqual(('active', 'resize_finish'), at_crash[:2])
        self.assertNotEqual(self.old_flavor,
                            self.api.get_server(self.server['id'])['flavor'])
        self.assertDecision(decision, 'rollback_resize', 'resize_finish')
        self.assertUsable(self.assertRolledBack())

    def test_resize_finish_guest_on_destination(self):
        """The destination's driver created and started the guest, then
        nova-compute died before recording the resize finished. The guest
        may have run and written to its new disks: nothing is rolled back.
        The resize is finished forward (resized, migration finished,
        allocations as after a resize), for the user to confirm or revert.
        """
        self.resize(self.crash_at(DRIVER, 'finish_migration', when='after'))
        self.assertEqual(('shutdown', 'running'), self.guests())
        at_crash, decision = self.restart(DEST)
        self.assertEqual(('active', 'resize_finish'), at_crash[:2])
        self.assertDecision(decision, 'finish_resize_forward',
                            'resize_finish')
        server = self.api.get_server(self.server['id'])
        self.assertEqual(('VERIFY_RESIZE', DEST),
                         (server['status'], server['OS-EXT-SRV-ATTR:host']))
        self.assertEqual(('resized', None, 'running'),
                         self.server_states(server))
        self.assertNotEqual(self.old_flavor, server['flavor'])
        # The destination's guest, the one that ran, is kept.
        self.assertEqual(('shutdown', 'running'), self.guests())
        migration = self.migration()
        self.assertEqual('finished', migration.status)
        # Placement as after a resize: the instance on the destination,
        # the migration holding the source until confirm or revert.
        self.assertEqual([self.dest_rp], list(
            self._get_allocations_by_server_uuid(server['id'])))
        self.assertEqual([self.source_rp], list(
            self._get_allocations_by_server_uuid(migration.uuid)))
        # The user confirms: the source is cleaned up as after any resize.
        server = self._confirm_resize(server)
        self.assertEqual(('ACTIVE', DEST),
                         (server['status'], server['OS-EXT-SRV-ATTR:host']))
        self.wait_until(lambda: self.migration().status == 'confirmed')
        self.assertEqual([self.dest_rp], list(
            self._get_allocations_by_server_uuid(server['id'])))
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            migration.uuid))

    # resize_reverting ------------------------------------------------------

    def test_resize_reverting_destination_guest_destroyed(self):
        """Revert: the destination destroyed its guest and died before
        casting finish_revert_resize to the source.
        """
        self.resized()
        self.revert(self.crash_at(DRIVER, 'destroy', when='after'))
        self.assertEqual(('shutdown', 'pending'), self.guests())
        self.assertEqual('reverting', self.migration().status)
        at_crash, decision = self.restart(DEST)
        self.assertEqual(('resized', 'resize_reverting'), at_crash[:2])
        self.assertDecision(decision, 'rollback_resize', 'resize_reverting')
        self.assertUsable(self.assertRolledBack())

    def test_resize_reverting_destination_before_cast(self):
        """Revert: the destination dropped its claim (migration already
        'reverted') and died before the cast to the source.
        """
        self.resized()
        self.revert(self.crash_at('nova.compute.rpcapi.ComputeAPI',
                                  'finish_revert_resize', when='before'))
        self.assertEqual(('shutdown', 'pending'), self.guests())
        self.assertEqual('reverted', self.migration().status)
        at_crash, decision = self.restart(DEST)
        self.assertEqual(('resized', 'resize_reverting'), at_crash[:2])
        self.assertDecision(decision, 'rollback_resize', 'resize_reverting')
        self.assertUsable(self.assertRolledBack())

    def test_resize_reverting_source_guest_restored(self):
        """Revert: the source restored the guest and saved the instance
        back on itself (migration context dropped, task_state still
        resize_reverting), then died before its last save: the source
        clears it to its guest (active).
        """
        self.resized()
        self.crash_in_finish_revert_resize()
        self.assertEqual(('running', 'pending'), self.guests())
        instance = self.instance(self.server)
        self.assertEqual((SOURCE, None), (instance.host,
                                          instance.migration_context))
        self.assertIsNotNone(instance.old_flavor)
        at_crash, decision = self.restart(SOURCE)
        self.assertEqual(('resized', 'resize_reverting'), at_crash[:2])
        self.assertDecision(decision, 'rollback_resize', 'resize_reverting')
        self.assertUsable(self.assertRolledBack(wait_revert=False))


class GuardedSourceRestartTest(_Base):
    """Only the source restarts: no restart of the destination helps."""

    NOVA_CONF = harness.GUARDED_NOVA_CONF + 'queued_grace_seconds = 1\n'
    assertDecision = GuardedResizeRecoveryTest.assertDecision
    assertRolledBack = GuardedResizeRecoveryTest.assertRolledBack
    assertUsable = GuardedResizeRecoveryTest.assertUsable

    def recovery_decisions(self):
        import json
        with open(CONF.guardrails.report_path) as f:
            report = json.load(f)
        return [d for d in report['decisions']
                if d['instance_uuid'] == self.server['id'] and
                d['guard'] == 'recovery_table']

    def test_resize_migrated_source_restart_alone(self):
        """The source died right after recording the instance on the
        destination, before casting finish_resize there; only the source
        restarts. After the grace period it rolls the resize back through
        the destination.
        """
        self.resize(self.crash_at_task_state(task_states.RESIZE_MIGRATED,
                                             when='after'))
        at_crash, _ = self.restart(SOURCE)
        self.assertEqual(('active', 'resize_migrated'), at_crash[:2])
        [decision] = self.recovery_decisions()
        self.assertEqual('queued', decision['action'])
        self.assertIn('finish_resize not started', decision['reason'])
        server = self.assertRolledBack()
        self.assertEqual(['queued', 'rollback_resize'],
                         [d['action'] for d in self.recovery_decisions()])
        self.assertUsable(server)

    def test_resize_migrated_both_restart(self):
        """The source saved resize_migrated (host = destination) and died
        before casting finish_resize; both restart. The destination cannot
        tell a lost finish_resize from one still queued for it, so it
        waits the grace period (nova alone would roll nothing back; casting
        a revert behind a queued finish_resize fails it). Then the resize
        is rolled back, once.
        """
        self.resize(self.crash_at_task_state(task_states.RESIZE_MIGRATED,
                                             when='after'))
        self.assertEqual(('shutdown', 'pending'), self.guests())
        at_crash, decision = self.restart(SOURCE, DEST)
        self.assertEqual(('active', 'resize_migrated'), at_crash[:2])
        self.assertEqual('queued', decision['action'])
        server = self.assertRolledBack()
        # Rolled back once (both computes write the same report file here,
        # so count nova's notifications, not report rows).
        self.assertEqual(1, len([
            n for n in self.notifier.versioned_notifications
            if n['event_type'] == 'instance.resize_revert.start']))
        self.assertUsable(server)

    def test_finish_resize_queued_while_destination_down(self):
        """The source cast finish_resize to a destination that is down;
        the source restarts and the destination stays down past the grace
        period. The source keeps waiting instead of casting revert_resize
        behind the queued finish_resize (finish_resize would fail on its
        task_state and its failure handler drop the migration's
        allocation: the instance back on the source with its allocation
        on the destination). Once the destination is back, the queued
        finish_resize finishes the resize.
        """
        from nova.compute import rpcapi
        held = []
        original = rpcapi.ComputeAPI.finish_resize
        self.useFixture(fixtures.MonkeyPatch(
            'nova.compute.rpcapi.ComputeAPI.finish_resize',
            lambda *args, **kwargs: held.append((args, kwargs))))
        self.api.post_server_action(self.server['id'],
                                    {'resize': {'flavorRef': NEW_FLAVOR}})
        self.wait_until(lambda: held, timeout=30)
        self.wait_until(lambda: self.server_states(self.server)[:2] == (
            'active', 'resize_migrated'), timeout=30)
        # The destination goes down with the message still queued for it.
        dest_conn = self.stop_compute(DEST)
        scenarios.force_down(self, DEST)
        self.restart_compute_service(SOURCE)
        [decision] = self.recovery_decisions()
        self.assertEqual('queued', decision['action'])
        # Well past the grace period: still waiting, nothing cast.
        time.sleep(3)
        self.assertEqual(('active', 'resize_migrated'),
                         self.server_states(self.server)[:2])
        self.assertEqual('post-migrating', self.migration().status)
        self.assertIn('is down', self.recovery_decisions()[1]['reason'])
        # The destination is back; its queue drains.
        scenarios.force_down(self, DEST, down=False)
        self.start_compute_on(DEST, dest_conn)
        for args, kwargs in held:
            original(*args, **kwargs)
        server = self._wait_for_state_change(self.server, 'VERIFY_RESIZE')
        self.assertEqual(DEST, server['OS-EXT-SRV-ATTR:host'])
        migration = self.migration()
        self.assertEqual('finished', migration.status)
        self.assertEqual([self.dest_rp], list(
            self._get_allocations_by_server_uuid(server['id'])))
        self.assertEqual([self.source_rp], list(
            self._get_allocations_by_server_uuid(migration.uuid)))
        time.sleep(2)
        self.assertEqual('VERIFY_RESIZE',
                         self.api.get_server(self.server['id'])['status'])

    def test_resize_migrating_rolled_back_on_the_source(self):
        """The source died after powering the guest off for the copy
        (resize_migrating). nova 34's own start-up revert fails on libvirt
        (finish_revert_migration reads instance.old_flavor, not set yet);
        the guard reverts: guest running again on the source, allocations
        back on the source only, migration error.
        """
        self.resize(self.crash_at(DRIVER, 'migrate_disk_and_power_off',
                                  when='after'))
        at_crash, _ = self.restart(SOURCE)
        self.assertEqual(('active', 'resize_migrating'), at_crash[:2])
        [decision] = self.recovery_decisions()
        self.assertDecision(decision, 'revert_resize', 'resize_migrating')
        self.assertEqual(('active', None, 'running'),
                         self.server_states(self.server))
        self.assertEqual(('running', 'pending'), self.guests())
        self.assertEqual('error', self.migration().status)
        self.assertEqual(
            [self.source_rp],
            list(self._get_allocations_by_server_uuid(self.server['id'])))
        self.assertEqual(
            {}, self._get_allocations_by_server_uuid(self.migration().uuid))
        self.assertUsable(self.api.get_server(self.server['id']))


class NovaAloneResizeRecoveryTest(_Base):
    """The same crashes with nova alone: the instance stays stuck."""

    NOVA_CONF = harness.NOVA_ALONE_CONF

    def assertStuck(self, states, guests):
        self.assertEqual(states, self.server_states(self.server)[:2])
        self.assertEqual(guests, self.guests())

    def test_resize_migrated(self):
        self.resize(self.crash_at_task_state(task_states.RESIZE_MIGRATED,
                                             when='after'))
        self.restart(SOURCE, DEST)
        self.assertStuck(('active', 'resize_migrated'),
                         ('shutdown', 'pending'))
        self.assertEqual('post-migrating', self.migration().status)

    def test_resize_migrating_revert_fails(self):
        self.resize(self.crash_at(DRIVER, 'migrate_disk_and_power_off',
                                  when='after'))
        self.restart(SOURCE)
        # nova cleared the task_state, but its revert raised: the guest
        # stays off and the allocations stay on the destination.
        self.assertEqual(('active', None),
                         self.server_states(self.server)[:2])
        self.assertEqual(('shutdown', 'pending'), self.guests())
        self.assertEqual(
            [self.dest_rp],
            list(self._get_allocations_by_server_uuid(self.server['id'])))
        self.assertIn('Failed to revert crashed migration',
                      self.stdlog.logger.output)

    def test_resize_finish_guest_on_destination(self):
        self.resize(self.crash_at(DRIVER, 'finish_migration', when='after'))
        self.restart(DEST)
        self.assertStuck(('active', 'resize_finish'), ('shutdown', 'running'))

    def test_resize_reverting_destination_guest_destroyed(self):
        self.resized()
        self.revert(self.crash_at(DRIVER, 'destroy', when='after'))
        self.restart(DEST)
        self.assertStuck(('resized', 'resize_reverting'),
                         ('shutdown', 'pending'))

    def test_resize_reverting_source_guest_restored(self):
        self.resized()
        self.crash_in_finish_revert_resize()
        self.restart(SOURCE)
        self.assertStuck(('resized', 'resize_reverting'),
                         ('running', 'pending'))


class HiddenSourceCopyTest(harness.GuardrailsTestBase):
    """A cross-cell resize waiting for its confirm leaves, in the source
    cell, a hidden copy of the instance on the source host: task_state
    resize_migrated, its guest powered off, old and new flavors recorded
    (nova's conductor/tasks/cross_cell_migrate.py: prep at the source,
    then ``_update_instance_mapping`` hides it). nova-conductor's confirm
    deletes it, its revert restores from it (``_revert_instance_flavor_
    host_node`` reads its old_flavor). nova-compute's init_host lists it
    (``InstanceList.get_by_host``) and nova alone leaves it as it is; a
    restart of the source host must too.
    """

    def _hidden_copy(self):
        server = scenarios.boot(self)
        ctxt = nova_context.get_admin_context()
        instance = objects.Instance.get_by_uuid(ctxt, server['id'],
                                                expected_attrs=['flavor'])
        self.computes[SOURCE].manager.driver.power_off(instance)
        instance.hidden = True
        instance.task_state = task_states.RESIZE_MIGRATED
        instance.old_flavor = instance.flavor
        instance.new_flavor = instance.flavor
        instance.save()
        return server

    def _assert_untouched(self, server):
        instance = objects.Instance.get_by_uuid(
            nova_context.get_admin_context(), server['id'],
            expected_attrs=['flavor', 'old_flavor', 'new_flavor'])
        self.assertEqual(('active', task_states.RESIZE_MIGRATED, True),
                         (instance.vm_state, instance.task_state,
                          instance.hidden))
        self.assertIsNotNone(instance.old_flavor)
        self.assertIsNotNone(instance.new_flavor)

    def test_guarded_leaves_it_to_nova(self):
        server = self._hidden_copy()
        self.restart_compute_service(SOURCE)
        self._assert_untouched(server)
        row = scenarios.decision(server)
        self.assertEqual(('nova', 'nova'),
                         (row['action'], row['executed_by']), row)
        self.assertIn('cross-cell resize', row['reason'])

    def test_guarded_without_grace_leaves_it_to_nova(self):
        # The table applies at once: no request is waited for.
        self.use_nova_conf(harness.GUARDED_NOVA_CONF +
                           'queued_grace_seconds = 0\n')
        server = self._hidden_copy()
        self.restart_compute_service(SOURCE)
        self._assert_untouched(server)
        self.assertEqual('nova', scenarios.decision(server)['action'])

    def test_nova_alone_leaves_it(self):
        self.use_nova_conf(harness.NOVA_ALONE_CONF)
        server = self._hidden_copy()
        self.restart_compute_service(SOURCE)
        self._assert_untouched(server)
