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
"""The ``recovery_table`` guard's start-up sweeps.

After nova's ``init_host`` (the driver initialised, nova's node-identity
checks and the other guards' refusals passed, this host's own instances
through ``_init_instance``), the guard runs each sweep of :data:`SWEEPS`
once, in that order. A sweep looks at instances this host's start-up does
not list (recorded on another host, or on none) that a move or an unshelve
through this host left half-way. Each has one shape:

* :meth:`Sweep.query`: what it queries (a failure skips the sweep: logged,
  start-up goes on, systemic errors excepted);
* :meth:`Sweep.decide`: for one candidate, what to act on, or None;
* :meth:`Sweep.act`: what it runs: a decision recorded in the start-up
  report (or a deferral, :mod:`.deferred`).

A failure with one candidate is logged and the next is looked at.
"""

import datetime

from nova.compute import task_states
from nova import context as nova_context

from nova import objects

from nova_guardrails.guards.recovery_table import actions
from nova_guardrails import queued
from nova_guardrails import recovery
from nova_guardrails import report as report_mod


class Sweep:
    """One start-up sweep, run by :meth:`run`.

    :ivar guard: the :class:`~nova_guardrails.guards.recovery_table.
        RecoveryTableGuard`.
    :ivar manager: nova's ``ComputeManager``.
    :ivar service_ref: this host's nova-compute service record, as
        ``init_host`` got it (None on a first start).
    :ivar grace: ``[guardrails] queued_grace_seconds``.
    :ivar context: an admin request context, made by :meth:`run`.
    """

    #: The sweep's name in the start-up log.
    name = None

    def __init__(self, guard, manager, service_ref, grace):
        self.guard = guard
        self.manager = manager
        self.service_ref = service_ref
        self.grace = grace
        self.context = None

    def query(self):
        """The candidates: an iterable (one or two queries)."""
        raise NotImplementedError()

    def decide(self, candidate):
        """What :meth:`act` acts on for ``candidate``, or None: nothing to
        do for it.
        """
        raise NotImplementedError()

    def act(self, found):
        """Run what :meth:`decide` found."""
        raise NotImplementedError()

    def run(self):
        self.context = nova_context.get_admin_context()
        self.guard._each(self.query(), self._one)

    def _one(self, candidate):
        found = self.decide(candidate)
        if found is not None:
            self.act(found)


class StrandedResizes(Sweep):
    """Resizes this host, their source, left half-way: the instance
    recorded on the destination in resize_migrated, the migration
    post-migrating, and no compute_finish_resize on the destination
    (this host died before casting it, or it is still queued there).
    Left ``queued_grace_seconds``, then rolled back (rollback_resize).
    Two queries when there is none.
    """

    name = '_stranded_resizes'

    def query(self):
        return objects.MigrationList.get_by_filters(
            self.context, {'source_compute': self.manager.host,
                           'status': 'post-migrating'})

    def decide(self, migration):
        """:returns: (instance, its latest action, why) or None."""
        if migration.migration_type not in ('resize', 'migration') or \
                migration.dest_compute == self.manager.host:
            return None
        instance = objects.Instance.get_by_uuid(
            self.context, migration.instance_uuid)
        if (instance.task_state != task_states.RESIZE_MIGRATED or
                instance.host != migration.dest_compute):
            return None
        latest = queued.latest_actions(self.context, [instance.uuid]).get(
            instance.uuid)
        if latest and 'compute_finish_resize' in latest.compute_events:
            return None
        why = ('resize to %s: recorded there in resize_migrated, '
               'finish_resize not started' % migration.dest_compute)
        return instance, latest, why

    def act(self, found):
        instance, latest, why = found
        if self.grace:
            self.guard._defer(self.manager, self.context, instance, latest,
                              why, watch='compute_finish_resize')
        else:
            self.guard._decide(self.manager, self.context, instance,
                               lambda *a: None, prefix=why + ': ')


class InterruptedEvacuations(Sweep):
    """Evacuations to this host that it never finished.

    nova 34 records an evacuated instance on its destination only when
    the rebuild there has finished (ResourceTracker.finish_evacuation):
    a destination that died mid-way leaves the instance recorded on the
    source, which is down, with the migration unfinished; when the
    source comes back, nova cleans up as if the evacuation had
    succeeded. Here the destination applies nova's own failure path of
    an evacuation (ComputeManager.rebuild_instance): this hypervisor's
    copy of the guest undefined (its disks kept), the migration failed,
    this node's allocation removed, the instance in error, so that it
    can be evacuated again and the source keeps it. An evacuation no
    compute_rebuild_instance event shows started may still be queued:
    it is looked at again after the grace period.
    """

    name = '_interrupted_evacuations'

    def query(self):
        return objects.MigrationList.get_by_filters(
            self.context, {'host': self.manager.host,
                           'migration_type': 'evacuation',
                           'status': ['accepted', 'pre-migrating']})

    def decide(self, migration):
        """:returns: (instance, migration, its latest action, started,
            why) or None.
        """
        if migration.dest_compute != self.manager.host:
            return None
        instance = objects.Instance.get_by_uuid(
            self.context, migration.instance_uuid)
        if instance.host != migration.source_compute:
            return None
        latest = queued.latest_actions(self.context, [instance.uuid]).get(
            instance.uuid)
        started = latest and ('compute_rebuild_instance' in
                              latest.compute_events)
        why = ('evacuation from %s to this host, not finished here' %
               migration.source_compute)
        return instance, migration, latest, started, why

    def act(self, found):
        instance, migration, latest, started, why = found
        if self.grace and not started:
            self.guard._defer(self.manager, self.context, instance, latest,
                              why, watch='compute_rebuild_instance')
            return
        self.guard._fail_evacuation(self.manager, self.context, instance,
                                    migration, why)


class InterruptedUnshelves(Sweep):
    """Unshelves of an offloaded instance that died on this host before
    its claim recorded the host: the instance stays shelved_offloaded
    with no host and task_state spawning or unshelving, so no
    nova-compute ever looks at it again, and this node keeps the
    allocation the scheduler made. Found by this host's unfinished
    ``compute_unshelve_instance`` event (one query); the allocation is
    removed and the task_state cleared: the instance is shelved
    offloaded again, the user unshelves again.
    """

    name = '_interrupted_unshelves'

    def query(self):
        return queued.unfinished_unshelves(self.context, self.manager.host)

    def decide(self, found):
        """Every candidate, (instance, its latest action), is acted on."""
        return found

    def act(self, found):
        instance, _latest = found
        guard, manager, context = self.guard, self.manager, self.context
        decision = report_mod.Decision(
            guard=guard.name, instance_uuid=instance.uuid,
            before=report_mod.InstanceState.of(instance, None),
            action='clear_unshelve', executed_by=recovery.BY_GUARDRAILS,
            reason='unshelve interrupted on this host before its claim '
                   'recorded the host: this node\'s allocation removed, '
                   'task_state cleared (shelved_offloaded, unshelve '
                   'again)')

        def run():
            for node in objects.ComputeNodeList.get_all_by_host(
                    context, manager.host):
                manager.reportclient.\
                    remove_provider_tree_from_instance_allocation(
                        context, instance.uuid, node.uuid)
            actions._save(instance, task_state=None)
        guard._run(decision, run, manager, instance)


class UnfinishedLiveMigrations(Sweep):
    """Live migrations to this host that this host finished
    (post_live_migration_at_destination recorded the instance here)
    but whose source never cleaned up: this host died before answering
    the source's call, so the migration still holds the source node's
    allocation. Done here as the source would
    (ComputeManager._delete_allocation_after_move): the migration's
    allocation removed, the migration completed.

    Bounded by what can be unfinished, not by the host's history: the
    open live migrations of this host (one query), and the ones in
    ``error`` updated since this service was last seen up, less two
    report intervals (one query; the source marks the migration error
    only once this host has stopped answering). A host without a
    service record or heartbeat has no such history.
    """

    name = '_unfinished_live_migrations'

    def query(self):
        context, manager = self.context, self.manager
        migrations = list(objects.MigrationList.get_by_filters(
            context, {'host': manager.host,
                      'migration_type': 'live-migration',
                      'status': ['queued', 'preparing', 'running',
                                 'post-migrating']}))
        last_seen = getattr(self.service_ref, 'updated_at', None) if \
            self.service_ref is not None else None
        if last_seen is not None:
            since = last_seen - datetime.timedelta(
                seconds=2 * self.guard.conf.report_interval)
            migrations.extend(objects.MigrationList.get_by_filters(
                context, {'host': manager.host,
                          'migration_type': 'live-migration',
                          'status': 'error', 'changes-since': since}))
        return migrations

    def decide(self, migration):
        """:returns: (instance, migration) or None."""
        context, manager = self.context, self.manager
        if migration.dest_compute != manager.host:
            return None
        instance = objects.Instance.get_by_uuid(
            context, migration.instance_uuid)
        if (instance.host != manager.host or
                instance.task_state is not None or
                not manager.reportclient.get_allocations_for_consumer(
                    context, migration.uuid)):
            return None
        return instance, migration

    def act(self, found):
        instance, migration = found
        guard, manager, context = self.guard, self.manager, self.context
        decision = report_mod.Decision(
            guard=guard.name, instance_uuid=instance.uuid,
            before=report_mod.InstanceState.of(
                instance, guard._power(manager, instance)),
            action='finish_live_migration',
            executed_by=recovery.BY_GUARDRAILS,
            reason='live migration from %s finished here, its source '
                   'clean-up missing: the migration\'s allocation on '
                   'the source removed, migration completed' %
                   migration.source_compute)

        def run():
            manager._delete_allocation_after_move(context, instance,
                                                  migration)
            migration.status = 'completed'
            migration.save()
        guard._run(decision, run, manager, instance)


#: The sweeps, in the order the guard runs them.
SWEEPS = (StrandedResizes, InterruptedEvacuations, InterruptedUnshelves,
          UnfinishedLiveMigrations)
