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
"""The ``rbd_root_disk`` guard: an instance's Ceph images die only with it.

The evacuation that deleted root disks (nova bug 1419785's evacuation
case): spawn failed on the destination, the libvirt driver's clean-up ran
with its disks and ``_cleanup_rbd`` deleted the instance's root disk from
the shared Ceph pool. nova 22 made spawn clean up
only what it created (``cleanup_instance_disks=created_disks``), but
``created_disks`` is one boolean for root, ephemeral and swap, and
``LibvirtDriver._cleanup_rbd`` (nova 34, ``nova/virt/libvirt/driver.py``)
still removes, through ``RBDDriver.cleanup_volumes``, every image whose
name starts with the instance uuid: ``<uuid>_disk``, ``_disk.local``,
``_disk.eph<N>``, ``_disk.swap``, ``_disk.config`` and the rescue images.

The guard replaces ``_cleanup_rbd`` on the real driver instance. It removes
nothing, and records one ``keep_images`` decision naming every image nova
would have removed, when

* the instance is not this host's (``instance.host`` is another
  nova-compute, or this host is unknown): during an evacuation
  ``instance.host`` stays the source until the rebuild on the destination
  succeeds (``ResourceTracker.finish_evacuation``), so a failed spawn there
  (nova bug 1419785), ``_destroy_evacuated_instances`` on the
  source, or any caller acting on another host's instance removes nothing;
* the clean-up is that of a failed rebuild spawn on the instance's own host
  (task_state ``rebuild_spawning``: the rebuild's destroy of the old disks
  ran before, in ``rebuilding``; only spawn's own clean-up runs now);
* the guard cannot decide.

Otherwise (the instance's deletion or reclaim on its host, a rebuild there
replacing the old disks, a failed build, a shelve offload) nova's own
``_cleanup_rbd`` runs unchanged. With
``[guardrails] rbd_trash_delay`` > 0 a deleted instance's root disk moves to
the pool's rbd trash instead (the other images are removed as nova does);
if that move fails, the disk stays.

Rescue images (``_disk.rescue``, ``_disk.config.rescue``) are kept with the
others: nova's ``unrescue`` removes them on the instance's host through its
own ``cleanup_volumes`` call, not through ``_cleanup_rbd``. Images of other
backends (``lvm``, local files) are not this guard's.
"""

import inspect

from nova.compute import task_states
from nova.compute import vm_states
from nova.storage import rbd_utils
from oslo_config import cfg
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
    """Only the instance's own host may remove its images, and never a
    failed rebuild or evacuation spawn.
    """

    #: Options in ``[guardrails]``, registered when the guard is loaded.
    CONFIG_OPTS = [
        cfg.IntOpt(
            'rbd_trash_delay',
            min=0,
            default=0,
            help='``rbd_root_disk`` guard: seconds an instance\'s root disk '
                 'stays in the pool\'s rbd trash when the instance is '
                 'deleted. 0: removed at once, as nova does. Positive: moved '
                 'to the rbd trash with that deferment; ``nova-guardrails '
                 'rbd-trash list`` and ``restore`` find and restore it until '
                 'it is purged.'),
    ]

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
        """``(allowed, context)``: may this host remove the images of
        ``instance``? Only when the instance is this host's and the
        clean-up is not that of a failed rebuild or evacuation spawn.
        """
        context = 'vm_state=%s task_state=%s host=%s' % (
            instance.vm_state, instance.task_state, instance.host)
        if host is None or instance.host != host:
            return False, context + ', not this host (%s)' % host
        if instance.task_state == task_states.REBUILD_SPAWNING:
            # The only _cleanup_rbd in rebuild_spawning is spawn's own
            # clean-up after it failed (_create_guest_with_network with
            # cleanup_instance_disks=created_disks). The rebuild's destroy
            # of the old disks ran before, in task_state rebuilding.
            return False, context + ', a failed rebuild spawn'
        return True, context

    @staticmethod
    def being_deleted(instance):
        """The instance itself is going away (not a rebuild or a move)."""
        return (instance.task_state == task_states.DELETING or
                instance.vm_state in (vm_states.DELETED,
                                      vm_states.SOFT_DELETED) or
                bool(instance.deleted))

    @staticmethod
    def nova_selection(instance):
        """The images nova's ``LibvirtDriver._cleanup_rbd`` would remove:
        ``f(name) -> bool``.
        """
        if instance.task_state == task_states.RESIZE_REVERTING:
            return lambda name: (name.startswith(instance.uuid) and
                                 name.endswith('disk.local'))
        return lambda name: name.startswith(instance.uuid)

    def cleanup(self, original, host, instance):
        try:
            allowed, context = self.deletion_allowed(host, instance)
        except Exception as error:
            allowed, context = False, 'could not decide: %s: %s' % (
                type(error).__name__, error)
        if not allowed:
            return self.keep_images(instance, context)
        if self.trash_delay > 0 and self.being_deleted(instance):
            return self.trash_root(instance)
        return original(instance)

    def keep_images(self, instance, context):
        """Remove nothing; one decision naming every image kept (those nova
        would have removed). Never raises: nova's clean-up goes on (the
        domain, the instance directory) without the images.
        """
        try:
            self._keep_images(instance, context)
        except Exception:
            LOG.exception('guardrails %s: kept every image of the instance '
                          '(%s); the decision could not be recorded',
                          self.name, context, instance=instance)

    def _keep_images(self, instance, context):
        details = {'pool': None, 'images': None, 'caller': _caller()}
        error = None
        try:
            driver = rbd_utils.RBDDriver()
            details['pool'] = driver.pool
            selects = self.nova_selection(instance)
            with rbd_utils.RADOSClient(driver, driver.pool) as client:
                details['images'] = sorted(
                    name for name in rbd_utils.RbdProxy().list(client.ioctx)
                    if selects(name))
        except Exception as exc:
            error = '%s: %s' % (type(exc).__name__, exc)
        if details['images'] == []:
            return
        LOG.error('guardrails %(guard)s: refused to remove the images of '
                  'instance %(uuid)s (%(context)s): kept %(images)s in pool '
                  '%(pool)s%(error)s; caller: %(caller)s',
                  dict(details, guard=self.name, uuid=instance.uuid,
                       context=context,
                       images=(', '.join(details['images'])
                               if details['images'] is not None else
                               'every image (the pool could not be listed)'),
                       error=' (%s)' % error if error else ''),
                  instance=instance)
        self.report.record_runtime(report_mod.Decision(
            guard=self.name, instance_uuid=instance.uuid,
            before=report_mod.InstanceState(instance.vm_state,
                                            instance.task_state, None),
            action='keep_images', outcome='refused',
            reason='every image of the instance kept (%s)' % context,
            error=error, details=details))

    def trash_root(self, instance):
        """A genuine delete with ``rbd_trash_delay``: nova's removal of the
        other images, the root disk to the rbd trash.
        """
        root = root_disk(instance.uuid)
        selects = self.nova_selection(instance)
        driver = rbd_utils.RBDDriver()
        driver.cleanup_volumes(lambda name: selects(name) and name != root)
        with rbd_utils.RADOSClient(driver, driver.pool) as client:
            if root not in rbd_utils.RbdProxy().list(client.ioctx):
                return
            details = {'image': root, 'pool': driver.pool,
                       'caller': _caller()}
            before = report_mod.InstanceState(instance.vm_state,
                                              instance.task_state, None)
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
