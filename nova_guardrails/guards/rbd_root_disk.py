"""The ``rbd_root_disk`` guard: a Ceph root disk dies only with its instance.

Seed 004: during an evacuation, spawn failed on the destination, the libvirt
driver's clean-up ran with its disks and ``_cleanup_rbd`` deleted the
instance's root disk from the shared Ceph pool. nova 22 made spawn clean up
only what it created (``cleanup_instance_disks=created_disks``), but
``created_disks`` is one boolean for root, ephemeral and swap, and
``LibvirtDriver._cleanup_rbd`` (nova 34, ``nova/virt/libvirt/driver.py``)
still removes every image whose name starts with the instance uuid.

The guard replaces ``_cleanup_rbd`` on the real driver instance. The root
disk ``<uuid>_disk`` may be removed only by the instance's own host
(``instance.host`` is this nova-compute): its deletion, its reclaim after a
soft delete, a rebuild on that host (which must replace the old disk), a
failed build or a shelve offload there, all as nova does. During an
evacuation ``instance.host`` stays the source until the rebuild on the
destination succeeds (``ResourceTracker.finish_evacuation``), so a failed
spawn there, ``_destroy_evacuated_instances`` on the source, or any caller
acting on another host's instance keeps the disk, and the refusal is logged
at ERROR with the instance, the context and the caller. When the guard
cannot decide, the disk is kept. The other images (ephemeral, swap, config
drive) are removed as nova does, through nova's own
``RBDDriver.cleanup_volumes``. With ``[guardrails] rbd_trash_delay`` > 0 a
deleted instance's root disk moves to the pool's rbd trash instead; if that
move fails, the disk stays.
"""

import inspect

from nova.compute import task_states
from nova.compute import vm_states
from nova.storage import rbd_utils
from oslo_log import log as logging

from nova_guardrails.guards import base
from nova_guardrails import report as report_mod

LOG = logging.getLogger(__name__)


def root_disk(instance_uuid):
    """Name of an instance's root disk image in the pool."""
    return '%s_disk' % instance_uuid


def _caller():
    """The nova functions that led here, innermost first (at most 5)."""
    names = []
    for frame in inspect.stack()[2:]:
        module = frame.frame.f_globals.get('__name__', '')
        if module.startswith('nova.') and frame.function not in names:
            names.append(frame.function)
        if len(names) == 5:
            break
    return ' <- '.join(names) or 'unknown'


class RbdRootDiskGuard(base.Guard):
    """Only the instance's own host may remove ``<uuid>_disk``."""

    def validate(self):
        self.trash_delay = self.conf.guardrails.rbd_trash_delay

    def wrap_driver(self, driver, manager):
        original = getattr(driver, '_cleanup_rbd', None)
        if original is None:
            LOG.warning('guardrails %s: the driver %s has no _cleanup_rbd; '
                        'nothing to guard', self.name, type(driver).__name__)
            return
        host = manager.host if manager is not None else None

        def _cleanup_rbd(instance):
            return self.cleanup(original, host, instance)
        driver._cleanup_rbd = _cleanup_rbd

    @staticmethod
    def deletion_allowed(host, instance):
        """``(allowed, context)``: may this host remove the root disk of
        ``instance``? Only when the instance is this host's."""
        context = 'vm_state=%s task_state=%s host=%s' % (
            instance.vm_state, instance.task_state, instance.host)
        if host is None or instance.host != host:
            return False, context + ', not this host (%s)' % host
        return True, context

    @staticmethod
    def being_deleted(instance):
        """The instance itself is going away (not a rebuild or a move)."""
        return (instance.task_state == task_states.DELETING or
                instance.vm_state in (vm_states.DELETED,
                                      vm_states.SOFT_DELETED) or
                bool(instance.deleted))

    def cleanup(self, original, host, instance):
        try:
            allowed, context = self.deletion_allowed(host, instance)
        except Exception as error:
            allowed, context = False, 'could not decide: %s' % error
        to_trash = (allowed and self.trash_delay > 0 and
                    self.being_deleted(instance))
        if allowed and not to_trash:
            return original(instance)
        # nova's own selection (LibvirtDriver._cleanup_rbd), minus the root
        # disk, which is decided here.
        root = root_disk(instance.uuid)
        if instance.task_state == task_states.RESIZE_REVERTING:
            def nova_selects(name):
                return (name.startswith(instance.uuid) and
                        name.endswith('disk.local'))
        else:
            def nova_selects(name):
                return name.startswith(instance.uuid)
        driver = rbd_utils.RBDDriver()
        driver.cleanup_volumes(lambda name: nova_selects(name) and
                               name != root)
        if not nova_selects(root):
            return
        with rbd_utils.RADOSClient(driver, driver.pool) as client:
            if root not in rbd_utils.RbdProxy().list(client.ioctx):
                return
            details = {'image': root, 'pool': driver.pool,
                       'caller': _caller()}
            before = report_mod.InstanceState(instance.vm_state,
                                              instance.task_state, None)
            if not allowed:
                LOG.error('guardrails %(guard)s: refused to remove root disk '
                          '%(pool)s/%(image)s of instance %(uuid)s: the '
                          'instance is not this host\'s (%(context)s); '
                          'caller: %(caller)s', dict(details, guard=self.name,
                                             uuid=instance.uuid,
                                             context=context),
                          instance=instance)
                self.report.record_runtime(report_mod.Decision(
                    guard=self.name, instance_uuid=instance.uuid,
                    before=before, action='keep_root', outcome='refused',
                    reason='root disk kept: the instance is not this '
                           'host\'s (%s)' % context,
                    details=details))
                return
            try:
                rbd_utils.RbdProxy().trash_move(client.ioctx, root,
                                                delay=self.trash_delay)
            except Exception as error:
                LOG.exception('guardrails %s: could not move root disk %s '
                              'to the rbd trash; it stays in the pool',
                              self.name, root, instance=instance)
                self.report.record_runtime(report_mod.Decision(
                    guard=self.name, instance_uuid=instance.uuid,
                    before=before, action='trash_root', outcome='failed',
                    reason='the move to the rbd trash failed; the root disk '
                           'stays in the pool',
                    error='%s: %s' % (type(error).__name__, error),
                    details=details))
                return
            self.report.record_runtime(report_mod.Decision(
                guard=self.name, instance_uuid=instance.uuid, before=before,
                action='trash_root',
                reason='instance deleted: root disk moved to the rbd trash '
                       'for %d s ([guardrails] rbd_trash_delay)'
                       % self.trash_delay, details=details))
