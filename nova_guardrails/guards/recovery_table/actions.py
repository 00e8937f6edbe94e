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
"""The ``recovery_table`` guard's actions: one registry, :data:`ACTIONS`.

Every action a row of :data:`nova_guardrails.recovery.RULES` (or an
operator override) names is an :class:`Action`: its name, what it does (the
``nova-guardrails table`` command and the documentation print it) and, for
the actions nova-guardrails runs itself (``by='guardrails'``), its executor.
An action only nova's own ``ComputeManager._init_instance`` runs
(``by='nova'``: ``complete_deletion``, ``rerun_stop``, ...) has no executor:
the row names what nova does for that key.
"""

import dataclasses
import typing

from nova.compute import task_states
from nova.compute import vm_states
from oslo_log import log as logging
from oslo_utils import excutils
from oslo_utils import timeutils

from nova import objects
from nova.virt import hardware

from nova_guardrails import queued

#: The guard's logger, shared by its modules (their log lines name the
#: guard's package, as when it was one module).
LOG = logging.getLogger(__package__)


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


@dataclasses.dataclass(frozen=True)
class Action:
    """One action of the recovery table.

    :ivar name: the name rows and overrides give it (``clear``,
        ``reboot_hard``...).
    :ivar description: what it does and the state it ends in (one
        paragraph, printed by ``nova-guardrails table``).
    :ivar run: how nova-guardrails runs it,
        ``run(manager, context, instance, power_state_name) -> bool``, True
        when nova's ``_init_instance`` should then run its normal start-up
        path; None for an action only nova's own ``_init_instance`` runs.
    """

    name: str
    description: str
    run: typing.Callable[..., bool] | None = None


#: The table's action vocabulary: name -> :class:`Action`.
ACTIONS = {action.name: action for action in (
    Action(
        'clear',
        'set task_state None, vm_state kept; then nova\'s normal start-up '
        'path (VIFs plugged; with resume_guests_state_on_host_boot, a guest '
        'recorded running but found off is started)',
        _clear),
    Action(
        'clear_active',
        'set task_state None and vm_state active (the guest runs); then '
        'nova\'s normal start-up path',
        _clear_active),
    Action(
        'clear_to_guest',
        'set task_state None and vm_state to what the guest is: running -> '
        'active, paused -> paused, shut down or crashed -> stopped, no guest '
        'on the hypervisor -> error; the guest is not touched; then nova\'s '
        'normal start-up path',
        _clear_to_guest),
    Action(
        'finish_suspend',
        'the driver saved the guest: vm_state suspended, task_state None (as '
        'ComputeManager.suspend_instance ends)',
        _finish_suspend),
    Action(
        'reboot_soft',
        'run the soft reboot again (ComputeManager.reboot_instance SOFT)',
        _reboot_soft),
    Action(
        'reboot_hard',
        'rewrite task_state to reboot_pending_hard, then run a HARD reboot '
        '(ComputeManager.reboot_instance HARD): the guest is rebuilt from the '
        'instance\'s own disks and ends active',
        _reboot_hard),
    Action(
        'error',
        'set vm_state error and task_state None',
        _error),
    Action(
        'leave',
        'nothing: the instance keeps its task_state and its guest as they '
        'are, for an operator to settle (nova\'s _init_instance does not run '
        'for it; an override only)',
        _leave),
    Action(
        'complete_deletion',
        'finish deleting the database records '
        '(ComputeManager._complete_partial_deletion)',
        None),
    Action(
        'rerun_delete',
        'delete the instance again (ComputeManager._delete_instance)',
        _rerun_delete),
    Action(
        'rerun_stop',
        'stop the instance again (ComputeManager.stop_instance)',
        None),
    Action(
        'rerun_start',
        'start the instance again (ComputeManager.start_instance)',
        None),
    Action(
        'rerun_soft_delete',
        'soft-delete the instance again (ComputeManager.soft_delete_instance: '
        'guest powered off, vm_state soft-deleted)',
        _rerun_soft_delete),
    Action(
        'rerun_restore',
        'restore the instance again (ComputeManager.restore_instance: guest '
        'powered on, vm_state active)',
        _rerun_restore),
    Action(
        'rerun_shelve_offload',
        'offload the shelved instance again '
        '(ComputeManager.shelve_offload_instance: guest destroyed, '
        'allocations removed, vm_state shelved_offloaded, host None)',
        _rerun_shelve_offload),
    Action(
        'unpause',
        'unpause the guest (ComputeManager.unpause_instance)',
        None),
    Action(
        'revert_resize',
        'roll the resize back on this host, its source: the migration\'s '
        'allocations back to the instance '
        '(ComputeManager._revert_allocation), the driver\'s '
        'finish_revert_migration, migration error, stashed flavors dropped, '
        'vm_state as before the resize, task_state None',
        _revert_resize),
    Action(
        'rollback_resize',
        'by the migration record: on the migration\'s destination, the '
        'RequestSpec back on the old flavor, task_state resize_reverting and '
        'migration reverting, then nova\'s revert_resize cast to this host '
        '(run once the service is up: this host\'s copy destroyed, '
        'finish_revert_resize cast to the source, which restores the guest, '
        'flavor and placement allocations there); on the source (the revert '
        'already restored the guest here) the stashed flavors dropped, then '
        'as clear_to_guest; a migration that names neither host, or a '
        'same-host resize: error',
        _rollback_resize),
    Action(
        'finish_resize_forward',
        'end the resize on its destination as ComputeManager._finish_resize '
        'ends once the driver\'s finish_migration returned: volume '
        'attachments completed, migration finished, vm_state resized, '
        'task_state None; then nova\'s normal start-up path. Nothing the '
        'guest wrote is rolled back; the user confirms or reverts',
        _finish_resize_forward),
    Action(
        'reset_live_migration',
        'abort the live migration and reset its state '
        '(ComputeManager._reset_live_migration)',
        None),
)}
