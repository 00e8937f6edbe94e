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
"""The ``recovery_table`` guard: settle interrupted task_states at start-up.

Runs around ``ComputeManager._init_instance`` for every instance of the host.
For an instance with a task_state it reads the power state from the
hypervisor, looks the key (task_state, vm_state, power state) up in
:mod:`nova_guardrails.recovery`, runs the action and records one decision
(log line and start-up report row). Instances without a task_state go to
nova's ``_init_instance`` untouched.

Differences from nova 34 alone (everything else is nova's own code path):

* a hard reboot interrupted on an instance in vm_state error is retried
  (nova skips error instances at start-up and leaves it stuck);
* a stale soft/hard reboot task_state in a vm_state nova-api never reboots
  from is cleared instead of left or turned into a reboot;
* an action that raises is contained: the instance stays as the failed
  action left it, the report says why, and start-up goes on for the other
  instances (nova alone lets the exception out of ``init_host`` and
  nova-compute does not start). Systemic errors (database, message bus) and
  refusals of other guards still stop start-up;
* when a request reaches the instance while the guard decides (nova-api
  accepts requests during start-up), the guard's save fails on the expected
  task_state and the guard changes nothing more (``preempted``).
"""

import dataclasses
import datetime
import functools
import threading

from nova.compute import task_states
from nova.compute import utils as compute_utils
from nova.compute import vm_states
from nova import context as nova_context
from nova import exception as nova_exception
from oslo_db import exception as db_exception
from oslo_log import log as logging
import oslo_messaging
from oslo_utils import excutils
from oslo_utils import timeutils

from nova import objects
from nova import servicegroup
from nova.virt import hardware

from nova_guardrails import exception
from nova_guardrails.guards import base
from nova_guardrails import queued
from nova_guardrails import recovery
from nova_guardrails import report as report_mod

LOG = logging.getLogger(__name__)

#: Errors that are not about one instance: start-up stops, as with nova
#: alone.
SYSTEMIC = (exception.StartupRefused, db_exception.DBConnectionError,
            oslo_messaging.MessagingTimeout)


def _save(instance, **changes):
    """Save ``changes`` only if the task_state is still the one decided on
    (raises UnexpectedTaskStateError otherwise).
    """
    expected = instance.task_state
    for field, value in changes.items():
        setattr(instance, field, value)
    instance.save(expected_task_state=[expected])


def _clear(manager, context, instance, power):
    _save(instance, task_state=None)
    return True


def _clear_active(manager, context, instance, power):
    _save(instance, task_state=None, vm_state=vm_states.ACTIVE)
    return True


#: clear_to_guest: the vm_state a guest's power state stands for.
VM_STATE_OF_GUEST = {
    'running': vm_states.ACTIVE,
    'paused': vm_states.PAUSED,
    'shutdown': vm_states.STOPPED,
    'crashed': vm_states.STOPPED,
    'suspended': vm_states.STOPPED,
}


def _clear_to_guest(manager, context, instance, power):
    vm_state = VM_STATE_OF_GUEST.get(power, vm_states.ERROR)
    if instance.vm_state == vm_states.SUSPENDED and power == 'shutdown':
        # A suspended guest is saved and off: starting it as a stopped one
        # would drop its saved memory.
        vm_state = vm_states.SUSPENDED
    _save(instance, task_state=None, vm_state=vm_state)
    # nova's normal start-up path would plug VIFs for an instance in error
    # too; an instance with no guest has nothing to plug.
    return vm_state != vm_states.ERROR


def _error(manager, context, instance, power):
    _save(instance, task_state=None, vm_state=vm_states.ERROR)
    return False


def _leave(manager, context, instance, power):
    return False


def _finish_suspend(manager, context, instance, power):
    _save(instance, task_state=None, vm_state=vm_states.SUSPENDED,
          power_state=manager._get_power_state(instance))
    return False


def _reboot_soft(manager, context, instance, power):
    manager.reboot_instance(context, instance, block_device_info=None,
                            reboot_type='SOFT')
    return False


def _reboot_hard(manager, context, instance, power):
    # ComputeManager._reboot_instance saves with expected_task_state in
    # hard_reboot_states; from a soft reboot state that save raises
    # UnexpectedTaskStateError (nova bug 1072751). nova 34's _init_instance
    # rewrites it too (NOTE(mikal)); here the rewrite is explicit.
    changes = {}
    if instance.task_state not in task_states.hard_reboot_states:
        changes['task_state'] = task_states.REBOOT_PENDING_HARD
    if instance.vm_state == vm_states.RESCUED:
        # _reboot_instance keeps vm_state rescued ("Don't change it out of
        # rescue mode") but the driver's hard reboot builds the guest from
        # the instance's own disks (rescuing/unrescuing): record it active.
        changes['vm_state'] = vm_states.ACTIVE
    if changes:
        _save(instance, **changes)
    manager.reboot_instance(context, instance, block_device_info=None,
                            reboot_type='HARD')
    return False


def _rerun_delete(manager, context, instance, power):
    # What nova's _init_instance runs for task_state deleting, which it
    # never reaches for a soft-deleted instance.
    instance.obj_load_attr('metadata')
    instance.obj_load_attr('system_metadata')
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        context, instance.uuid)
    manager._delete_instance(context, instance, bdms)
    return False


def _rerun_restore(manager, context, instance, power):
    manager.restore_instance(context, instance)
    return False


def _rerun_soft_delete(manager, context, instance, power):
    manager.soft_delete_instance(context, instance)
    return False


def _rerun_shelve_offload(manager, context, instance, power):
    manager.shelve_offload_instance(context, instance, clean_shutdown=True,
                                    accel_uuids=[])
    return False


#: The snapshot nova's libvirt driver takes before a resize touches an rbd
#: root disk, and rolls back to on revert.
#: (nova.virt.libvirt.utils.RESIZE_SNAPSHOT_NAME; not imported, so that the
#: guard loads with any driver.)
RESIZE_SNAPSHOT = 'nova-resize'

#: Statuses of a cold migration or resize still to be finished or reverted.
OPEN_RESIZE = ('migrating', 'post-migrating', 'finished', 'reverting',
               'reverted')


def _resize_migration(context, instance):
    """The migration record of the instance's cold migration or resize in
    progress, or None.
    """
    if instance.migration_context is not None:
        return objects.Migration.get_by_id_and_instance(
            context, instance.migration_context.migration_id, instance.uuid)
    # finish_revert_resize drops the migration context before its last two
    # saves: the instance's latest cold migration or resize, if it is still
    # open and names the instance's host.
    for migration in objects.MigrationList.get_by_filters(
            context, {'instance_uuid': instance.uuid},
            sort_keys=['created_at', 'id'], sort_dirs=['desc', 'desc']):
        if migration.migration_type in ('resize', 'migration'):
            if (migration.status in OPEN_RESIZE and instance.host in (
                    migration.source_compute, migration.dest_compute)):
                return migration
            return None
    return None


def _finish_resize_forward(manager, context, instance, power):
    """End a resize whose destination's driver created the guest, as
    ``ComputeManager._finish_resize`` ends once the driver's
    ``finish_migration`` returned: volume attachments completed, migration
    finished, vm_state resized, task_state None. The user confirms or
    reverts; nothing the guest wrote on this host is rolled back. Only the
    destination of a resize between two hosts finishes it; anything else
    is set to error.
    """
    migration = _resize_migration(context, instance)
    if (migration is None or
            migration.source_compute == migration.dest_compute or
            instance.host != migration.dest_compute or
            migration.dest_compute != manager.host):
        LOG.warning('guardrails recovery_table: resize_finish without a '
                    'migration record naming this host as destination: '
                    'vm_state error', instance=instance)
        return _error(manager, context, instance, power)
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        context, instance.uuid)
    manager._complete_volume_attachments(context, bdms)
    migration.status = 'finished'
    migration.save()
    _save(instance, vm_state=vm_states.RESIZED, task_state=None,
          launched_at=timeutils.utcnow())
    return True


def _rollback_resize(manager, context, instance, power):
    migration = _resize_migration(context, instance)
    if migration is None or (migration.source_compute ==
                             migration.dest_compute):
        # No record to roll back by, or a same-host resize whose two copies
        # share one instance directory: decide nothing destructive.
        LOG.warning('guardrails recovery_table: %s cannot be rolled back '
                    'from the migration record (%s): vm_state error',
                    instance.task_state,
                    'none' if migration is None else 'same-host resize',
                    instance=instance)
        return _error(manager, context, instance, power)
    if instance.host == migration.dest_compute and manager.host in (
            migration.dest_compute, migration.source_compute):
        # On the destination; or on the source when it died right after
        # recording the instance on the destination and before casting
        # finish_resize there (RecoveryTableGuard.init_host finds those).
        if migration.status == 'reverted':
            # drop_move_claim_at_dest marked it reverted; revert_resize's
            # last step is the finish_revert_resize cast to the source.
            latest = queued.latest_actions(context, [instance.uuid]).get(
                instance.uuid)
            if latest is None or ('compute_revert_resize', manager.host) \
                    not in latest.unfinished:
                # revert_resize finished here: the cast went out (it may
                # still be queued at the source); casting again would run
                # finish_revert_resize twice there.
                LOG.info('guardrails recovery_table: revert already handed '
                         'to %s; nothing to do here',
                         migration.source_compute, instance=instance)
                return False
            # This host died inside revert_resize, after its part and
            # before the cast: only the source's part is missing.
            request_spec = objects.RequestSpec.get_by_instance_uuid(
                context, instance.uuid)
            manager.compute_rpcapi.finish_revert_resize(
                context, instance, migration, migration.source_compute,
                request_spec)
            return False
        _save(instance, task_state=task_states.RESIZE_REVERTING)
        request_spec = objects.RequestSpec.get_by_instance_uuid(
            context, instance.uuid)
        # As nova-api's revert_resize: conductor pointed the RequestSpec at
        # the new flavor; later moves must schedule the original one.
        if (instance.old_flavor is not None and
                request_spec.flavor.id != instance.old_flavor.id):
            request_spec.flavor = instance.old_flavor
            request_spec.numa_topology = hardware.numa_get_constraints(
                instance.old_flavor, instance.image_meta)
            request_spec.save()
        migration.status = 'reverting'
        migration.save()
        # Cast to the destination, as nova-api does, rather than calling
        # revert_resize here: during init_host the resource tracker has no
        # compute node yet (pre_start_hook loads them), so its
        # drop_move_claim_at_dest raises KeyError. The cast is consumed once
        # the RPC server starts, after pre_start_hook.
        manager.compute_rpcapi.revert_resize(
            context, instance, migration, migration.dest_compute,
            request_spec)
        return False
    if instance.host == migration.source_compute == manager.host:
        if instance.migration_context is None:
            # finish_revert_resize restored the guest here; its finally
            # (_delete_stashed_flavor_info) and its last save are missing.
            instance.old_flavor = None
            instance.new_flavor = None
            instance.system_metadata.pop('old_vm_state', None)
        return _clear_to_guest(manager, context, instance, power)
    return _error(manager, context, instance, power)


def _revert_resize(manager, context, instance, power):
    """Roll back a resize interrupted on its source (resize_migrating).

    nova 34's own start-up path for this task_state calls the driver's
    finish_revert_migration, whose vTPM step reads ``instance.old_flavor``;
    resize_instance sets it only with its resize_migrated save, so on
    libvirt that call raises AttributeError and nova leaves the guest off
    with the instance's allocations on the destination.

    Here, preconditions first: the migration record; the old flavor (the
    flavor has not changed yet); on rbd, the resize snapshot the driver
    rolls back to (``nova-resize``) exists only once the destination ran
    ``_create_image``: without it the destination never touched the disk,
    so a snapshot of the disk as it is makes the driver's rollback a no-op
    (nothing is lost, nothing rolled back). Then the driver restores the
    guest; only once it did are the migration's allocations moved back to
    the instance (ComputeManager._revert_allocation) and the migration
    ended ``error``, as when resize_instance fails. If the driver fails,
    the task_state is cleared as nova alone does, allocations untouched.
    """
    migration = _resize_migration(context, instance)
    if migration is None or migration.source_compute != manager.host:
        return _error(manager, context, instance, power)
    if instance.old_flavor is None:
        instance.old_flavor = instance.flavor
    power_on = (instance.system_metadata.get('old_vm_state') !=
                vm_states.STOPPED)
    try:
        _ensure_resize_snapshot(manager, instance)
        manager.driver.finish_revert_migration(
            context, instance, instance.get_network_info(), migration,
            manager._get_instance_block_device_info(context, instance),
            power_on)
    except Exception:
        with excutils.save_and_reraise_exception():
            # nova's own outcome: "Failed to revert crashed migration",
            # task_state reset.
            instance.refresh()
            _save(instance, task_state=None)
    manager._revert_allocation(context, instance, migration)
    migration.status = 'error'
    migration.save()
    instance.drop_migration_context()
    instance.old_flavor = None
    instance.new_flavor = None
    instance.system_metadata.pop('old_vm_state', None)
    _save(instance, task_state=None,
          vm_state=vm_states.ACTIVE if power_on else vm_states.STOPPED,
          power_state=manager._get_power_state(instance))
    return True


def _ensure_resize_snapshot(manager, instance):
    """On a snapshot-capable image backend (rbd), make sure the root disk
    has the resize snapshot ``finish_revert_migration`` rolls back to;
    create it from the disk as it is when it is missing (see
    :func:`_revert_resize`). A no-op on local image backends.
    """
    backend = getattr(manager.driver, 'image_backend', None)
    if backend is None:
        return
    root_disk = backend.by_name(instance, 'disk')
    rbd = getattr(root_disk, 'driver', None)
    if rbd is None or not hasattr(rbd, 'rollback_to_snap') or \
            not root_disk.exists():
        return
    if not rbd.exists(root_disk.rbd_name, snapshot=RESIZE_SNAPSHOT):
        LOG.info('guardrails recovery_table: root disk %s has no %s '
                 'snapshot (the destination never touched it): taking one '
                 'of the disk as it is, so the revert rolls nothing back',
                 root_disk.rbd_name, RESIZE_SNAPSHOT, instance=instance)
        root_disk.create_snap(RESIZE_SNAPSHOT)


#: How nova-guardrails runs the ``by='guardrails'`` actions:
#: ``f(manager, context, instance, power_state_name) -> bool``, True when
#: nova's ``_init_instance`` should then run its normal start-up path.
EXECUTORS = {
    'clear': _clear,
    'clear_active': _clear_active,
    'clear_to_guest': _clear_to_guest,
    'error': _error,
    'leave': _leave,
    'finish_suspend': _finish_suspend,
    'reboot_soft': _reboot_soft,
    'reboot_hard': _reboot_hard,
    'rerun_delete': _rerun_delete,
    'rerun_restore': _rerun_restore,
    'rerun_soft_delete': _rerun_soft_delete,
    'rerun_shelve_offload': _rerun_shelve_offload,
    'rollback_resize': _rollback_resize,
    'finish_resize_forward': _finish_resize_forward,
    'revert_resize': _revert_resize,
}


#: task_states whose table row, made for an interrupted request, rebuilds
#: the guest (a HARD reboot: whether the rescue guest or the instance's own
#: runs cannot be told). A request still queued after the grace period
#: never reached a compute: the guest is as it was, the task_state is only
#: cleared.
LOST_REQUEST_CLEARED = frozenset([task_states.RESCUING,
                                  task_states.UNRESCUING])


@dataclasses.dataclass(frozen=True)
class _Deferred:
    """An instance left alone at start-up for queued_grace_seconds."""

    uuid: str
    task_state: str
    host: str
    action_id: int | None
    watch: str | None
    #: the request id of the latest instance action (the queued request).
    request_id: str | None = None
    #: a stranded resize waiting for its destination to come back.
    waiting: bool = False

    def moved(self, instance, latest):
        """Did anything take the request up since start-up?"""
        if (instance.task_state != self.task_state or
                instance.host != self.host):
            return True
        if latest is None:
            return False
        if self.watch:
            return self.watch in latest.compute_events
        return latest.action_id != self.action_id or bool(
            latest.started_on(self.host))


class RecoveryTableGuard(base.Guard):
    """Apply :data:`nova_guardrails.recovery.RULES` at start-up, with the
    operator's ``[guardrails] recovery_overrides``.

    A request still queued for this host (:mod:`nova_guardrails.queued`) is
    left alone and looked at again ``[guardrails] queued_grace_seconds``
    after start-up: if nothing moved by then, the table applies.
    """

    def __init__(self, conf, report):
        super().__init__(conf, report)
        self.index = recovery.INDEX
        self.rules = recovery.RULES
        self._ledger = queued.RequestLedger(self._late_delivery_dropped)
        self._deferred = []
        self._timer = None
        self._started = False
        self._stopping = False

    def validate(self):
        missing = {rule.action for rule in recovery.RULES
                   if rule.by == recovery.BY_GUARDRAILS} - set(EXECUTORS)
        if missing:
            raise recovery.TableError('recovery_table: no executor for %s'
                                      % sorted(missing))
        self.rules = recovery.effective_rules(
            self.conf.guardrails.recovery_overrides)
        self.index = recovery.build_index(self.rules)

    # Start-up ------------------------------------------------------------

    def init_host(self, manager, service_ref, call_next):
        self._deferred = []
        self._started = False
        self._stopping = False
        grace = self.conf.guardrails.queued_grace_seconds
        result = call_next(service_ref)
        # Only now: the driver is initialised, nova's node-identity checks
        # and the other guards' refusals (host_identity) have passed, and
        # this host's own instances went through _init_instance. These
        # checks look at instances this host's start-up does not list.
        sweeps = (
            functools.partial(self._stranded_resizes, manager, grace),
            functools.partial(self._interrupted_evacuations, manager, grace),
            functools.partial(self._interrupted_unshelves, manager),
            functools.partial(self._unfinished_live_migrations, manager,
                              service_ref))
        for sweep in sweeps:
            # A sweep whose query fails is skipped, as one instance's
            # failure is: start-up goes on (systemic errors excepted).
            try:
                sweep()
            except SYSTEMIC:
                raise
            except Exception:
                LOG.exception('guardrails recovery_table: start-up check %s '
                              'failed; nova-compute starts without it',
                              sweep.func.__name__)
        if self._deferred:
            # Before the RPC server starts (Service.start, after init_host):
            # a deferred request the recovery later takes over is never run
            # a second time when its message is delivered late.
            self._ledger.wrap(manager)
        self._started = True
        return result

    def post_start_hook(self, manager, call_next):
        """After nova-compute's RPC server started (Service.start): a
        request still queued for this host can reach it from now on, so the
        grace period starts here.
        """
        result = call_next()
        if self._deferred and not self._stopping:
            grace = self.conf.guardrails.queued_grace_seconds
            LOG.info('guardrails recovery_table: %(n)d instance(s) with a '
                     'request that may still be queued; looked at again '
                     'in %(grace)ss', {'n': len(self._deferred),
                                       'grace': grace})
            self._schedule(manager, list(self._deferred), grace)
        return result

    def _schedule(self, manager, deferred, grace):
        """Re-check ``deferred`` in ``grace`` seconds, on a daemon timer
        (not a thread of nova's pools: nova-compute's shutdown never waits
        for it); cancelled by driver_cleanup_host.
        """
        timer = threading.Timer(grace, self._recheck,
                                args=(manager, deferred, grace))
        timer.daemon = True
        self._timer = timer
        timer.start()

    def rechecks_pending(self):
        """True while deferred instances wait for (or are in) their
        re-check after the grace period.
        """
        timer = self._timer
        return timer is not None and timer.is_alive()

    def _late_delivery_dropped(self, method, instance, request_id):
        decision = report_mod.Decision(
            guard=self.name, instance_uuid=instance.uuid,
            before=report_mod.InstanceState(
                instance.vm_state, instance.task_state, None),
            action='late_delivery_dropped',
            executed_by=recovery.BY_GUARDRAILS,
            reason='%s of request %s was delivered after the start-up '
                   'recovery took that request over: not run a second '
                   'time' % (method, request_id))
        decision.after = decision.before
        self.report.record_runtime(decision)

    @staticmethod
    def _each(candidates, check):
        """``check(candidate)`` for each; a failure with one (but a
        systemic one) is logged and the next is looked at: one instance
        never stops start-up.
        """
        for candidate in candidates:
            try:
                check(candidate)
            except SYSTEMIC:
                raise
            except Exception:
                LOG.exception('guardrails recovery_table: a start-up check '
                              'failed for %s; it is left as it is',
                              candidate)

    def driver_cleanup_host(self, manager, host):
        # A stopped nova-compute decides nothing more; its next start-up
        # looks again.
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _stranded_resizes(self, manager, grace):
        """Resizes this host, their source, left half-way: the instance
        recorded on the destination in resize_migrated, the migration
        post-migrating, and no compute_finish_resize on the destination
        (this host died before casting it, or it is still queued there).
        Left ``queued_grace_seconds``, then rolled back (rollback_resize).
        Two queries when there is none.
        """
        context = nova_context.get_admin_context()
        migrations = objects.MigrationList.get_by_filters(
            context, {'source_compute': manager.host,
                      'status': 'post-migrating'})

        def one(migration):
            if migration.migration_type not in ('resize', 'migration') or \
                    migration.dest_compute == manager.host:
                return
            instance = objects.Instance.get_by_uuid(
                context, migration.instance_uuid)
            if (instance.task_state != task_states.RESIZE_MIGRATED or
                    instance.host != migration.dest_compute):
                return
            latest = queued.latest_actions(context, [instance.uuid]).get(
                instance.uuid)
            if latest and 'compute_finish_resize' in latest.compute_events:
                return
            why = ('resize to %s: recorded there in resize_migrated, '
                   'finish_resize not started' % migration.dest_compute)
            if grace:
                self._defer(manager, context, instance, latest, why,
                            watch='compute_finish_resize')
            else:
                self._decide(manager, context, instance, lambda *a: None,
                             prefix=why + ': ')
        self._each(migrations, one)

    def _interrupted_evacuations(self, manager, grace):
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
        context = nova_context.get_admin_context()
        migrations = objects.MigrationList.get_by_filters(
            context, {'host': manager.host, 'migration_type': 'evacuation',
                      'status': ['accepted', 'pre-migrating']})

        def one(migration):
            if migration.dest_compute != manager.host:
                return
            instance = objects.Instance.get_by_uuid(
                context, migration.instance_uuid)
            if instance.host != migration.source_compute:
                return
            latest = queued.latest_actions(context, [instance.uuid]).get(
                instance.uuid)
            started = latest and ('compute_rebuild_instance' in
                                  latest.compute_events)
            why = ('evacuation from %s to this host, not finished here' %
                   migration.source_compute)
            if grace and not started:
                self._defer(manager, context, instance, latest, why,
                            watch='compute_rebuild_instance')
                return
            self._fail_evacuation(manager, context, instance, migration, why)
        self._each(migrations, one)

    def _interrupted_unshelves(self, manager):
        """Unshelves of an offloaded instance that died on this host before
        its claim recorded the host: the instance stays shelved_offloaded
        with no host and task_state spawning or unshelving, so no
        nova-compute ever looks at it again, and this node keeps the
        allocation the scheduler made. Found by this host's unfinished
        ``compute_unshelve_instance`` event (one query); the allocation is
        removed and the task_state cleared: the instance is shelved
        offloaded again, the user unshelves again.
        """
        context = nova_context.get_admin_context()

        def one(found):
            instance, _latest = found
            decision = report_mod.Decision(
                guard=self.name, instance_uuid=instance.uuid,
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
                _save(instance, task_state=None)
            self._run(decision, run, manager, instance)
        self._each(queued.unfinished_unshelves(context, manager.host), one)

    def _unfinished_live_migrations(self, manager, service_ref):
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
        context = nova_context.get_admin_context()
        migrations = list(objects.MigrationList.get_by_filters(
            context, {'host': manager.host,
                      'migration_type': 'live-migration',
                      'status': ['queued', 'preparing', 'running',
                                 'post-migrating']}))
        last_seen = getattr(service_ref, 'updated_at', None) if \
            service_ref is not None else None
        if last_seen is not None:
            since = last_seen - datetime.timedelta(
                seconds=2 * self.conf.report_interval)
            migrations.extend(objects.MigrationList.get_by_filters(
                context, {'host': manager.host,
                          'migration_type': 'live-migration',
                          'status': 'error', 'changes-since': since}))

        def one(migration):
            if migration.dest_compute != manager.host:
                return
            instance = objects.Instance.get_by_uuid(
                context, migration.instance_uuid)
            if (instance.host != manager.host or
                    instance.task_state is not None or
                    not manager.reportclient.get_allocations_for_consumer(
                        context, migration.uuid)):
                return
            decision = report_mod.Decision(
                guard=self.name, instance_uuid=instance.uuid,
                before=report_mod.InstanceState.of(
                    instance, self._power(manager, instance)),
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
            self._run(decision, run, manager, instance)
        self._each(migrations, one)

    def _fail_evacuation(self, manager, context, instance, migration, why):
        decision = report_mod.Decision(
            guard=self.name, instance_uuid=instance.uuid,
            before=report_mod.InstanceState.of(
                instance, self._power(manager, instance)),
            action='fail_evacuation', executed_by=recovery.BY_GUARDRAILS,
            reason=why + ': nova\'s failure path of an evacuation (this '
                   'copy undefined, disks kept; migration failed; this '
                   'node\'s allocation removed; vm_state error, to be '
                   'evacuated again)')

        def run():
            # First the save that expects the task_state decided on: a
            # rebuild that reached this host meanwhile wins (preempted) and
            # nothing else is done.
            _save(instance, vm_state=vm_states.ERROR, task_state=None)
            # As nova's rebuild failure path: the server shows why.
            compute_utils.add_instance_fault_from_exc(
                context, instance, nova_exception.NovaException(
                    'nova-guardrails recovery_table: %s' % why))
            try:
                manager.driver.destroy(context, instance,
                                       instance.get_network_info(),
                                       block_device_info=None,
                                       destroy_disks=False)
            except nova_exception.InstanceNotFound:
                pass
            migration.status = 'failed'
            migration.save()
            node = objects.ComputeNode.get_by_host_and_nodename(
                context, manager.host, migration.dest_node)
            manager.reportclient.remove_provider_tree_from_instance_allocation(
                context, instance.uuid, node.uuid)
            instance.drop_migration_context()
        self._run(decision, run, manager, instance, runtime=self._started)

    def init_instance(self, manager, context, instance, call_next):
        if instance.task_state is None or instance.host != manager.host:
            return call_next(context, instance)
        grace = self.conf.guardrails.queued_grace_seconds
        if grace and instance.task_state in queued.MAYBE_QUEUED:
            try:
                latest = queued.latest_action(context, instance.uuid)
            except SYSTEMIC:
                raise
            except Exception as error:
                # Cannot tell queued from interrupted: nova's own
                # _init_instance, as without the guard.
                decision = report_mod.Decision(
                    guard=self.name, instance_uuid=instance.uuid,
                    before=report_mod.InstanceState.of(
                        instance, self._power(manager, instance)),
                    action='nova', executed_by=recovery.BY_NOVA,
                    reason='the instance actions could not be read: left '
                           'to nova\'s _init_instance',
                    error='%s: %s' % (type(error).__name__, error))
                self._run(decision, lambda: call_next(context, instance),
                          manager, instance)
                return None
            verdict, why = queued.classify(instance.task_state, latest,
                                           manager.host)
            if verdict == queued.QUEUED:
                self._defer(manager, context, instance, latest, why,
                            watch=queued.CAST_BY_ANOTHER_HOST.get(
                                instance.task_state),
                            call_next=call_next)
                return None
        return self._decide(manager, context, instance, call_next)

    #: vm_states for which nova's start-up path of an instance without a
    #: task_state only plugs its VIFs and, after a host reboot, restarts
    #: its guest (ComputeManager._init_instance).
    STABLE_PATH_VM_STATES = frozenset([
        vm_states.ACTIVE, vm_states.STOPPED, vm_states.PAUSED,
        vm_states.SUSPENDED, vm_states.RESCUED, vm_states.RESIZED,
        vm_states.SHELVED])

    def _defer(self, manager, context, instance, latest, why, watch=None,
               call_next=None):
        """Leave ``instance``'s task_state alone for now; :meth:`_recheck`
        looks again after the grace period.

        :param watch: the compute event that means the request was taken
            up; None: any ``compute_*`` event on the latest action.
        :param call_next: for an instance of this host, nova's
            ``_init_instance`` chain: its start-up path of a stable instance
            runs now (VIFs plugged, guest restarted after a host reboot
            with resume_guests_state_on_host_boot), on a copy whose
            task_state reads None and is never saved.
        """
        decision = report_mod.Decision(
            guard=self.name, instance_uuid=instance.uuid,
            before=report_mod.InstanceState.of(
                instance, self._power(manager, instance)),
            action='queued', executed_by=recovery.BY_GUARDRAILS,
            reason='%s: left alone, looked at again after [guardrails] '
                   'queued_grace_seconds' % why)
        request_id = latest.request_id if latest else None
        self._ledger.watch(instance.uuid, request_id)
        self._deferred.append(_Deferred(
            instance.uuid, instance.task_state, instance.host,
            latest.action_id if latest else None, watch, request_id))
        if call_next is not None and \
                instance.vm_state in self.STABLE_PATH_VM_STATES:
            decision.reason += ('; nova\'s start-up path of a stable '
                                'instance run meanwhile')
            stable = instance.obj_clone()
            stable.task_state = None
            stable.obj_reset_changes(['task_state'])
            # The report's "after" is the instance's own record: its
            # task_state still deferred.
            self._run(decision, lambda: call_next(context, stable), manager,
                      instance)
            return
        decision.after = decision.before
        self.report.record(decision)

    def _recheck(self, manager, deferred, grace):
        """After the grace period: a deferred instance whose task_state did
        not move and whose request no compute took up is decided by the
        table, as an interrupted one. Each instance and its latest action
        are read again right before it is decided.
        """
        context = nova_context.get_admin_context()
        waiting = []
        for entry in deferred:
            if self._stopping:
                return
            try:
                again = self._recheck_one(manager, context, entry, grace)
            except Exception:
                LOG.exception('guardrails recovery_table: the queued '
                              're-check of instance %s failed; it is left '
                              'as it is', entry.uuid)
                continue
            if again is not None:
                waiting.append(again)
        if waiting and not self._stopping:
            self._schedule(manager, waiting, grace)

    def _moved(self, manager, entry, instance, why):
        decision = report_mod.Decision(
            guard=self.name, instance_uuid=entry.uuid,
            before=report_mod.InstanceState(None, entry.task_state, None),
            action='queued', executed_by=recovery.BY_NOVA, reason=why)
        decision.after = self._state_after(manager, instance)
        self.report.record_runtime(decision)

    def _recheck_one(self, manager, context, entry, grace):
        """Decide one deferred instance; returns the entry to look at again
        later, or None.
        """
        instance = objects.Instance.get_by_uuid(context, entry.uuid)
        latest = queued.latest_action(context, entry.uuid)
        if entry.moved(instance, latest):
            self._moved(manager, entry, instance,
                        'the queued request reached a compute or the '
                        'instance moved on: nothing to recover')
            return None
        if entry.watch == 'compute_finish_resize' and \
                entry.host != manager.host and \
                not self._host_up(context, entry.host):
            # finish_resize may still be queued for the destination:
            # casting revert_resize behind it would let finish_resize fail
            # on its task_state and drop the migration's allocation.
            if not entry.waiting:
                self._moved(manager, entry, instance,
                            'the destination %s is down: its finish_resize '
                            'may still be queued there; looked at again '
                            'every %ss until it is up' % (entry.host, grace))
            return dataclasses.replace(entry, waiting=True)
        if not self._ledger.take_over(entry.uuid, entry.request_id):
            self._moved(manager, entry, instance,
                        'the queued request was delivered meanwhile: '
                        'nova runs it')
            return None
        if entry.watch == 'compute_rebuild_instance':
            evacuations = objects.MigrationList.get_by_filters(
                context, {'instance_uuid': entry.uuid,
                          'migration_type': 'evacuation',
                          'status': ['accepted', 'pre-migrating']})
            migrations = [m for m in evacuations
                          if m.dest_compute == manager.host]
            if not migrations:
                self._moved(manager, entry, instance,
                            'the evacuation to this host is no longer '
                            'open: nothing to recover here')
                return None
            self._fail_evacuation(
                manager, context, instance, migrations[-1],
                'still not started after %ss: evacuation to this host'
                % grace)
            return None
        # nova's own _init_instance, as at start-up (never for an instance
        # recorded on another host).
        nova_init = type(manager)._init_instance.__get__(manager)
        self._decide(manager, context, instance, nova_init, runtime=True,
                     prefix='still queued after %ss: ' % grace,
                     lost_request=True)
        return None

    @staticmethod
    def _host_up(context, host):
        """Is the nova-compute service of ``host`` up (nova's
        servicegroup API)? A host without a service record is down.
        """
        try:
            service = objects.Service.get_by_compute_host(context, host)
        except nova_exception.ComputeHostNotFound:
            return False
        return servicegroup.API().service_is_up(service)

    def _power(self, manager, instance):
        try:
            return manager._get_power_state(instance)
        except Exception:
            return None

    def _decide(self, manager, context, instance, call_next, runtime=False,
                prefix='', lost_request=False):
        decision = report_mod.Decision(
            guard=self.name, instance_uuid=instance.uuid,
            before=report_mod.InstanceState(
                instance.vm_state, instance.task_state, None),
            action='nova', reason='', executed_by=recovery.BY_NOVA)
        try:
            power = manager._get_power_state(instance)
        except SYSTEMIC:
            raise
        except Exception as error:
            # Cannot decide: nova's own _init_instance handles it, as it
            # would without the guard.
            decision.reason = ('the power state could not be read from the '
                               'hypervisor: left to nova\'s _init_instance')
            decision.error = '%s: %s' % (type(error).__name__, error)
            self._run(decision, lambda: call_next(context, instance),
                      manager, instance, runtime)
            return None
        decision.before = report_mod.InstanceState.of(instance, power)
        power_name = decision.before.power_state
        rule = self.index.get((instance.task_state, instance.vm_state,
                               power_name))
        if lost_request and rule is not None and \
                instance.task_state in LOST_REQUEST_CLEARED:
            rule = dataclasses.replace(
                rule, action='clear', by=recovery.BY_GUARDRAILS,
                reason='the request never reached a compute, so the guest '
                       'was not touched: task_state cleared, vm_state kept '
                       '(the user asks again)')
        if rule is None:
            # Only a vm_state or power state this nova does not define.
            decision.action = 'unlisted'
            decision.reason = ('state not in the recovery table: left to '
                               'nova\'s _init_instance')
            run = lambda: call_next(context, instance)  # noqa: E731
        elif rule.by == recovery.BY_NOVA:
            decision.action, decision.reason = rule.action, rule.reason
            run = lambda: call_next(context, instance)  # noqa: E731
        else:
            decision.action, decision.reason = rule.action, rule.reason
            decision.executed_by = recovery.BY_GUARDRAILS
            execute = EXECUTORS[rule.action]

            def run():
                if execute(manager, context, instance, power_name):
                    call_next(context, instance)
        decision.reason = prefix + decision.reason
        self._run(decision, run, manager, instance, runtime)
        return None

    def _run(self, decision, run, manager, instance, runtime=False):
        try:
            run()
        except SYSTEMIC:
            raise
        except nova_exception.UnexpectedTaskStateError as error:
            decision.outcome = 'preempted'
            decision.error = str(error)
            self._refresh(instance)
        except Exception as error:
            decision.outcome = 'failed'
            decision.error = '%s: %s' % (type(error).__name__, error)
            LOG.exception('guardrails %s: action %s failed; the instance '
                          'stays as it left it and start-up goes on',
                          self.name, decision.action, instance=instance)
            self._refresh(instance)
        decision.after = self._state_after(manager, instance)
        if runtime:
            self.report.record_runtime(decision)
        else:
            self.report.record(decision)

    @staticmethod
    def _refresh(instance):
        try:
            instance.refresh()
        except Exception:
            LOG.debug('guardrails: could not refresh the instance',
                      instance=instance)

    @staticmethod
    def _state_after(manager, instance):
        try:
            power = manager._get_power_state(instance)
        except Exception:
            power = None
        return report_mod.InstanceState.of(instance, power)
