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
"""The ``host_identity`` guard: one hypervisor, one nova-compute host.

nova bug 1419785: an HA standby nova-compute started with another
``[DEFAULT] host`` over the same hypervisor took the guests for evacuated
ones and destroyed them all. nova >= 27 detects a rename through the node
uuid (``ComputeManager._check_for_host_rename``), and a *new* service over a
hypervisor with guests (``_sanity_check_new_host``), but a standby with its
own service record still starts: it registers a second compute node for the
same hypervisor_hostname (placement counts the machine twice) and leaves
the other host's guests unmanaged.

Start-up checks, from the driver's ``init_host`` (before nova's node checks,
before anything is written or destroyed); either refuses start-up:

* every node the driver reports: a non-deleted compute node of another host
  whose hypervisor_hostname is the same name ignoring case, or the short
  form of it (``hostA`` and ``hostA.example.com``: the resolver may give
  either; two different fully qualified names are two machines);
* a guest on this hypervisor, running or not, whose instance is recorded on
  another host, unless an *open* migration of that instance (in flight,
  awaiting confirm or revert, or an evacuation whose source has not cleaned
  up) has this host as its source or destination. A finished move is
  history: it says where the instance was, not that this hypervisor is
  this host's. A guest whose instance is deleted is nova's to remove
  (``_destroy_evacuated_instances``, ``_cleanup_running_deleted_instances``):
  reported, never a refusal (nova bug 1794996). A stopped guest left by a
  resize or cold migration from this host to the instance's host whose
  confirm is over (``confirmed``, or ``error`` when its clean-up failed to
  undefine the guest) is reported and left, as nova leaves it.

``[guardrails] allow_takeover_from`` does not lift either refusal: nova has
no API or nova-manage command that moves a compute node or an instance to
another host, so a start-up over another host's node or guests registers
the hypervisor twice and leaves the guests managed by no nova-compute. The
refusal says so and gives the supported ways: one identity for an HA pair
(``[DEFAULT] host`` and ``$state_path/compute_id``), or the other host's
servers moved away and its service deleted first.

Around ``ComputeManager._destroy_evacuated_instances``: an evacuation from
this host is cleaned up as nova does (the local guest destroyed, this
node's allocation removed, the migration completed) only on complete
evidence: the instance is deleted, or the evacuation is ``done``, the
instance is recorded on its destination and that host's nova-compute
service is known. Otherwise the evacuation is not over (the destination may
still be rebuilding, or died): a local guest is powered off and kept, its
disks untouched, and the evacuation is left open (not completed, this
node's allocation kept), so that the destination's own recovery can still
fail it as nova's rebuild failure path does. Once nova-compute is up, the
kept evacuations are looked at again every ``SETTLE_INTERVAL`` seconds for
``SETTLE_TIMEOUT`` seconds: finished, the copy is destroyed as nova would
(its disks kept when the destination shares them); failed, the copy is left
to nova and the operator. ``[guardrails] max_startup_destroys`` caps how
many guests may be destroyed.

The ironic driver is refused by the driver wrapper itself (its nodes move
between hosts by design; see ``[guardrails] driver``).
"""

import dataclasses
import threading
import time

from nova.compute import power_state
from nova import context as nova_context
from nova import exception as nova_exception
from nova.network import model as network_model
from nova import objects
from nova.objects import fields
from nova import utils as nova_utils
from oslo_config import cfg
from oslo_log import log as logging

from nova_guardrails import exception
from nova_guardrails.guards import base
from nova_guardrails import report as report_mod

LOG = logging.getLogger(__name__)

#: How many names a refusal message lists before it gives a count.
LISTED = 10

#: The migration records nova's _destroy_evacuated_instances acts on.
EVACUATION_FILTERS = {
    'status': ['accepted', 'pre-migrating', 'done'],
    'migration_type': fields.MigrationType.EVACUATION,
}


#: Migration statuses of a move that is not over for this host: in
#: flight, awaiting a confirm or revert ('finished', 'confirming',
#: 'reverting'), or an evacuation done on its destination whose source
#: has not cleaned up yet ('done'). Every other status ('completed',
#: 'confirmed', 'reverted', 'failed', 'error', 'cancelled') is history.
OPEN_MIGRATION_STATUSES = (
    'queued', 'preparing', 'running', 'post-migrating', 'accepted',
    'pre-migrating', 'migrating', 'finished', 'confirming', 'reverting',
    'done')


#: Seconds between two looks at the evacuations kept at start-up (four
#: queries each, whatever their number).
SETTLE_INTERVAL = 30

#: Seconds after start-up the guard keeps looking at them; then it records
#: ``keep`` and the next start-up decides.
SETTLE_TIMEOUT = 3600


@dataclasses.dataclass(frozen=True)
class _Kept:
    """An evacuation from this host left open at start-up."""

    instance_uuid: str
    migration_uuid: str
    #: a guest of it was on this hypervisor (powered off and kept)
    local: bool


def _listing(items):
    shown = ', '.join(items[:LISTED])
    if len(items) > LISTED:
        shown += ' and %d more' % (len(items) - LISTED)
    return shown


def same_hypervisor(name, other):
    """Do two hypervisor names designate one machine?

    Equal ignoring case, or one is the short form of the other (it has no
    dot and is the other's first label, ignoring case): the resolver gave
    ``hostA`` once and ``hostA.example.com`` later. Two different fully
    qualified names (``hostA.dc1.example.com``, ``hostA.dc2.example.com``)
    are two machines.
    """
    name, other = name.lower(), other.lower()
    if name == other:
        return True
    if '.' in name and '.' not in other:
        return name.split('.', 1)[0] == other
    if '.' in other and '.' not in name:
        return other.split('.', 1)[0] == name
    return False


def _ways_out(this_host, other_hosts):
    others = ', '.join(sorted(other_hosts))
    text = ('If this nova-compute is meant to be host %(other)s (the two '
            'nova-computes of an HA pair share one identity), set '
            '[DEFAULT] host = %(other)s in its nova.conf and give it '
            '%(other)s\'s node identity file ($state_path/compute_id). To '
            'hand the hypervisor to host %(this)s for good, first move '
            '%(other)s\'s servers off it (migrate or live-migrate them while '
            '%(other)s runs, or delete them), then delete the service of '
            '%(other)s (openstack compute service delete; nova refuses '
            'while it hosts instances), then start this nova-compute.'
            % {'other': others, 'this': this_host})
    return text


def _takeover_refused(taken_over):
    if not taken_over:
        return ''
    return (' [guardrails] allow_takeover_from names %(hosts)s, but no '
            'start-up can make that takeover consistent: nova has no API or '
            'nova-manage command that moves a compute node or an instance '
            'to another host, so this nova-compute would register the '
            'hypervisor a second time and leave the guests recorded on '
            '%(hosts)s, managed by no nova-compute. Remove the option.'
            % {'hosts': ', '.join(sorted(taken_over))})


class HostIdentityGuard(base.Guard):
    """Refuse host remapping; destroy evacuated guests on evidence only."""

    #: Options in ``[guardrails]``, registered when the guard is loaded.
    CONFIG_OPTS = [
        cfg.ListOpt(
            'allow_takeover_from',
            default=[],
            deprecated_for_removal=True,
            deprecated_reason='no start-up can make a takeover consistent: '
                              'nova has no API that moves a compute node or '
                              'an instance to another host',
            help='``host_identity`` guard: no longer lets a start proceed. '
                 'When this hypervisor\'s compute node, or a guest on it, is '
                 'recorded for one of these hosts, the refusal says why a '
                 'takeover cannot be made consistent and gives the supported '
                 'steps (an HA pair shares one [DEFAULT] host and node '
                 'identity; to move a hypervisor, move its servers off, '
                 'delete the old service, then start).'),
        cfg.IntOpt(
            'max_startup_destroys',
            min=0,
            default=None,
            help='``host_identity`` guard: the most guests nova-compute may '
                 'destroy at start-up as evacuated to another host. When '
                 'more would be destroyed, nova-compute refuses to start, '
                 'lists them and destroys none. Unset: no limit.'),
    ]

    def __init__(self, conf, report):
        super().__init__(conf, report)
        self._kept = []
        self._stop = threading.Event()
        self._destroyed = 0

    def validate(self):
        self.allow_takeover_from = set(
            self.conf.guardrails.allow_takeover_from)
        self.max_startup_destroys = self.conf.guardrails.max_startup_destroys

    # Start-up refusal ------------------------------------------------------

    def driver_init_host(self, manager, host):
        context = nova_context.get_admin_context()
        self._check_nodes(manager, context)
        self._check_guests(manager, context)

    def _check_nodes(self, manager, context):
        """Refuse when a hypervisor node the driver reports is a compute
        node of another host under any spelling of its name
        (:func:`same_hypervisor`). One query per node: the compute nodes
        whose name contains the node's short name (nova's own hypervisor
        search, a LIKE match; case-insensitive on MySQL and SQLite).
        """
        conflicts = []
        # A driver that learns its nodes in its own init_host reports None
        # before it (nova's fake drivers; on nova 29 these checks run before
        # the driver's init_host): nothing to compare yet.
        nodes = manager.driver.get_available_nodes(refresh=True) or []
        for nodename in nodes:
            short = nodename.split('.', 1)[0]
            for node in objects.ComputeNodeList.get_by_hypervisor(
                    context, short):
                if (node.host != manager.host and
                        same_hypervisor(node.hypervisor_hostname, nodename)):
                    conflicts.append((nodename, node))
        if not conflicts:
            return
        for nodename, node in conflicts:
            self.report.record(report_mod.Decision(
                guard=self.name, instance_uuid=None,
                node=nodename, before=None,
                action='refuse_start',
                reason='hypervisor %s is compute node %s of host %s, '
                       'registered as %s' % (
                           nodename, node.uuid, node.host,
                           node.hypervisor_hostname),
                outcome='refused'))
        hosts = {node.host for _, node in conflicts}
        raise exception.StartupRefused(reason=(
            'nova-guardrails host_identity: hypervisor node(s) %(nodes)s '
            'already registered to host(s) %(hosts)s, but this nova-compute '
            'is host %(this)s. Starting would register the same hypervisor '
            'twice and treat the other host\'s guests as its own (nova bug '
            '1419785). %(out)s%(takeover)s' % {
                'nodes': _listing(['%s (registered as %s: compute node %s, '
                                   'host %s)' % (
                                       name, n.hypervisor_hostname, n.uuid,
                                       n.host)
                                   for name, n in conflicts]),
                'hosts': ', '.join(sorted(hosts)), 'this': manager.host,
                'out': _ways_out(manager.host, hosts),
                'takeover': _takeover_refused(
                    hosts & self.allow_takeover_from)}))

    def _check_guests(self, manager, context):
        """Refuse when a guest on this hypervisor, running or not, belongs
        to an instance recorded on another host and no open migration
        (:data:`OPEN_MIGRATION_STATUSES`) of that instance has this host as
        its source or destination, unless it is the stopped leftover of a
        cold move from here that is over (:meth:`_confirmed_leftover`). A
        guest of a deleted instance is nova's to remove.

        Round trips: one (the uuids of this host's instances, not the
        instances: nothing per guest crosses to nova-conductor) when every
        guest is this host's; then one for the other guests' instances, one
        for this host's open migrations when one of them is another host's,
        and one per stopped guest no open migration explains.
        """
        uuids = manager.driver.list_instance_uuids()
        if not uuids:
            return
        mine = set(objects.InstanceList.get_uuids_by_host(context,
                                                          manager.host))
        others = [uuid for uuid in uuids if uuid not in mine]
        if not others:
            return
        with nova_utils.temporary_mutation(context, read_deleted='yes'):
            instances = objects.InstanceList.get_by_filters(
                context, {'uuid': others}, expected_attrs=[])
        foreign = []
        for instance in instances:
            if instance.deleted:
                self.report.record(report_mod.Decision(
                    guard=self.name, instance_uuid=instance.uuid,
                    before=report_mod.InstanceState.of(
                        instance, self._power(manager, instance)),
                    action='report', executed_by='nova',
                    reason='the guest is on this hypervisor but its instance '
                           '(last on host %s) is deleted: nova removes it '
                           '(_destroy_evacuated_instances for an evacuation '
                           'from this host, else '
                           '_cleanup_running_deleted_instances)' % (
                               instance.host)))
                continue
            if instance.host and instance.host != manager.host:
                foreign.append(instance)
        if not foreign:
            return
        links = {}
        for migration in objects.MigrationList.get_by_filters(
                context, {'host': manager.host,
                          'status': list(OPEN_MIGRATION_STATUSES)}):
            links.setdefault(migration.instance_uuid, migration)
        unexplained = []
        for instance in foreign:
            migration = links.get(instance.uuid)
            power = self._power(manager, instance)
            if migration is None:
                if not self._confirmed_leftover(manager, context, instance,
                                                power):
                    unexplained.append((instance, power))
                continue
            self.report.record(report_mod.Decision(
                guard=self.name, instance_uuid=instance.uuid,
                before=report_mod.InstanceState.of(instance, power),
                action='report',
                reason='the guest is on this hypervisor and its instance is '
                       'recorded on host %s: %s %s (%s, %s to %s) is open' % (
                           instance.host, migration.migration_type,
                           migration.uuid, migration.status,
                           migration.source_compute,
                           migration.dest_compute)))
        if not unexplained:
            return
        for instance, power in unexplained:
            self.report.record(report_mod.Decision(
                guard=self.name, instance_uuid=instance.uuid,
                before=report_mod.InstanceState.of(instance, power),
                action='refuse_start',
                reason='the guest is on this hypervisor (%s) but its '
                       'instance is recorded on host %s, and no open '
                       'migration links it to host %s' % (
                           report_mod.power_state_name(power),
                           instance.host, manager.host),
                outcome='refused'))
        hosts = {i.host for i, _ in unexplained}
        raise exception.StartupRefused(reason=(
            'nova-guardrails host_identity: %(n)d guest(s) on this '
            'hypervisor belong to other host(s) and no open migration '
            'links them to this host %(this)s: %(guests)s. Another '
            'nova-compute owns them; this one would manage them as '
            'evacuated or foreign (nova bug 1419785). If they are leftovers '
            'of a move that is over, remove them from the hypervisor. '
            '%(out)s%(takeover)s' % {
                'n': len(unexplained), 'this': manager.host,
                'guests': _listing(['%s (host %s, %s)' % (
                    i.uuid, i.host, report_mod.power_state_name(p))
                    for i, p in unexplained]),
                'out': _ways_out(manager.host, hosts),
                'takeover': _takeover_refused(
                    hosts & self.allow_takeover_from)}))

    def _confirmed_leftover(self, manager, context, instance, power):
        """Whether a guest of another host is the stopped leftover of a
        cold move from this host that is over (one query).

        True, with a ``leave`` report row, when the guest is shut off or
        crashed and the instance's latest migration is a resize or cold
        migration from this host and one of its nodes to the host the
        instance is recorded on, ``confirmed`` or ``error``. nova's confirm
        undefines the source guest (``driver.confirm_migration``, the
        libvirt driver's ``_cleanup_resize``) before it marks the migration
        confirmed; when that clean-up fails, ``confirm_resize`` leaves the
        migration in ``error`` and the guest defined, shut off (the
        instance in ERROR, nova's log hinting at a hard reboot). In the
        embedded nova of the functional tests every service shares one
        ``CONF.host`` and ``_cleanup_resize`` never undefines, so the same
        leftover follows a ``confirmed`` migration. nova alone starts and
        leaves the guest; so does the guard: stopped, it cannot run twice,
        and removing it is the operator's call (with rbd its disks are the
        instance's own images).
        """
        if power not in (power_state.SHUTDOWN, power_state.CRASHED):
            return False
        migrations = objects.MigrationList.get_by_filters(
            context, {'instance_uuid': instance.uuid})
        if not migrations:
            return False
        latest = max(migrations, key=lambda m: (m.created_at, m.id))
        nodes = set(manager.driver.get_available_nodes())
        if not (latest.status in ('confirmed', 'error') and
                latest.migration_type in (fields.MigrationType.RESIZE,
                                          fields.MigrationType.MIGRATION) and
                latest.source_compute == manager.host and
                latest.source_node in nodes and
                latest.dest_compute == instance.host):
            return False
        self.report.record(report_mod.Decision(
            guard=self.name, instance_uuid=instance.uuid,
            before=report_mod.InstanceState.of(instance, power),
            action='leave', executed_by='nova',
            reason='the guest is on this hypervisor (%s) and its instance '
                   'is recorded on host %s: a leftover of %s %s from this '
                   'host, %s (the source clean-up of its confirm did not '
                   'undefine it); stopped, it cannot run twice; left as nova '
                   'leaves it: remove it with virsh undefine (which deletes '
                   'no disk; with rbd its disks are the instance\'s)' % (
                       report_mod.power_state_name(power), instance.host,
                       latest.migration_type, latest.uuid, latest.status)))
        return True

    # Evacuated guests ------------------------------------------------------

    def destroy_evacuated_instances(self, manager, context, node_cache,
                                    call_next):
        """nova's clean-up of the evacuations from this host, on complete
        evidence only.

        The evacuations nova reads (accepted, pre-migrating, done; deleted
        ones too) are sorted, in three queries (the migrations, the
        instances with no guest here, the nova-compute services):

        * complete evidence (the instance is deleted, or the evacuation is
          ``done``, the instance is recorded on its destination and that
          host's service is known): nova's clean-up, as nova does it (the
          guest destroyed, disks kept when the destination shares them,
          this node's allocation removed, the migration completed);
        * otherwise the evacuation is not over, or cannot be shown to be:
          a guest here is powered off and kept, disks untouched
          (``power_off_keep``), and the evacuation is left as it is: not
          marked completed, this node's allocation kept, so that the
          destination, when it comes back, can still fail it as nova's
          rebuild failure path does (recovery_table). nova-compute's
          start-up skips the instance, as nova does for every evacuation.

        When nothing is kept nova's own method runs. When something is,
        it cannot (it marks every evacuation it reads completed): the guard
        runs nova's steps for the others itself. Kept evacuations are then
        looked at again every :data:`SETTLE_INTERVAL` seconds for
        :data:`SETTLE_TIMEOUT` seconds after start-up (:meth:`_settle`).
        """
        self._kept = []
        self._stop = threading.Event()
        self._destroyed = 0
        filters = dict(EVACUATION_FILTERS, source_compute=manager.host)
        with nova_utils.temporary_mutation(context, read_deleted='yes'):
            evacuations = objects.MigrationList.get_by_filters(context,
                                                               filters)
        if not evacuations:
            return call_next(context, node_cache)
        by_instance = {m.instance_uuid: m for m in evacuations}
        # Deleted instances included, as nova's own listing does.
        local = {i.uuid: i for i in manager._get_instances_on_driver(context)
                 if i.uuid in by_instance}
        missing = [uuid for uuid in by_instance if uuid not in local]
        instances = dict(local)
        destroy, keep = [], []
        try:
            if missing:
                with nova_utils.temporary_mutation(context,
                                                   read_deleted='yes'):
                    instances.update(
                        (i.uuid, i) for i in
                        objects.InstanceList.get_by_filters(
                            context, {'uuid': missing}, expected_attrs=[]))
            known_hosts = self._known_hosts(context)
            failure = None
        except Exception as error:
            # Cannot prove anything: keep every candidate (fail closed).
            LOG.exception('guardrails %s: could not read the evidence of '
                          'the evacuations from this host', self.name)
            failure = 'database error reading the evidence (%s: %s)' % (
                type(error).__name__, error)
        for uuid, migration in by_instance.items():
            instance = instances.get(uuid)
            reason = failure or self._missing_evidence(
                manager, instance, migration, known_hosts)
            if reason:
                keep.append((uuid, instance, migration, reason))
            elif uuid in local:
                destroy.append((instance, migration))
        if (self.max_startup_destroys is not None and
                len(destroy) > self.max_startup_destroys):
            self._refuse_destroys(manager, destroy)
        still_running = [
            instance for uuid, instance, migration, reason in keep
            if uuid in local and not self._power_off_and_keep(
                manager, instance, migration, reason)]
        if still_running:
            raise exception.StartupRefused(reason=(
                'nova-guardrails host_identity: %d evacuated guest(s) could '
                'not be powered off and may now run on two hosts: %s. '
                'nova-compute does not start; power them off by hand, then '
                'start again.' % (len(still_running), _listing(
                    [i.uuid for i in still_running]))))
        for uuid, instance, migration, reason in keep:
            if uuid not in local:
                self._record_open(instance, uuid, migration, reason)
        powers = {i.uuid: self._power(manager, i) for i, _ in destroy}
        self._destroyed = len(destroy)
        if not keep:
            result = call_next(context, node_cache)
            executed_by = 'nova'
        else:
            # nova's _destroy_evacuated_instances would mark the kept
            # evacuations completed too: its steps, for the others only.
            hostname_to_cn_uuid = {cn.hypervisor_hostname: cn.uuid
                                   for cn in node_cache.values()}
            for instance, migration in destroy:
                self._destroy_as_nova(manager, context, instance, migration)
            kept = {uuid for uuid, _, _, _ in keep}
            for uuid, migration in by_instance.items():
                if uuid not in kept:
                    self._finish_as_nova(manager, context,
                                         instances.get(uuid), uuid in local,
                                         migration, hostname_to_cn_uuid)
            result = by_instance
            executed_by = 'guardrails'
            self._kept = [_Kept(uuid, migration.uuid, uuid in local)
                          for uuid, _, migration, _ in keep]
        for instance, migration in destroy:
            self.report.record(report_mod.Decision(
                guard=self.name, instance_uuid=instance.uuid,
                before=report_mod.InstanceState.of(
                    instance, powers[instance.uuid]),
                action='destroy', executed_by=executed_by,
                reason=self._why_destroy(instance, migration),
                after=report_mod.InstanceState.of(
                    instance, self._power(manager, instance))))
        return result

    @staticmethod
    def _why_destroy(instance, migration):
        if instance is None:
            return ('the instance is gone: its guest is a leftover of the '
                    'evacuation to %s' % migration.dest_compute)
        if instance.deleted:
            return ('the instance is deleted: its guest is a leftover of '
                    'the evacuation to %s' % migration.dest_compute)
        return ('evacuated to %s: the instance is recorded there and its '
                'nova-compute service is known' % migration.dest_compute)

    @staticmethod
    def _known_hosts(context):
        return {s.host for s in objects.ServiceList.get_by_binary(
            context, 'nova-compute', include_disabled=True)}

    def _record_open(self, instance, uuid, migration, reason):
        state = (report_mod.InstanceState.of(instance, None)
                 if instance is not None else None)
        self.report.record(report_mod.Decision(
            guard=self.name, instance_uuid=uuid, before=state,
            action='keep_open',
            reason='no guest here; evacuation %s left %s (not marked '
                   'completed, this node\'s allocation kept): %s' % (
                       migration.uuid, migration.status, reason),
            after=state))

    @staticmethod
    def _missing_evidence(manager, instance, migration, known_hosts):
        """Why the evacuation is not shown to be over, or None."""
        if instance is None or instance.deleted:
            return None
        if instance.host == manager.host:
            return ('evacuation %s is %s and the instance is still recorded '
                    'on this host' % (migration.uuid, migration.status))
        if instance.host != migration.dest_compute:
            return ('the instance is recorded on host %s, not on the '
                    'evacuation\'s destination %s' % (
                        instance.host, migration.dest_compute))
        if migration.status != 'done':
            return ('evacuation %s is %s: not finished on %s' % (
                migration.uuid, migration.status, migration.dest_compute))
        if migration.dest_compute not in known_hosts:
            return ('the evacuation\'s destination %s has no nova-compute '
                    'service record' % migration.dest_compute)
        return None

    @staticmethod
    def _destroy_as_nova(manager, context, instance, migration):
        """The local guest of a finished evacuation, destroyed as
        ``ComputeManager._destroy_evacuated_instances`` does: its disks
        kept when the destination shares them.
        """
        LOG.info('Destroying instance as it has been evacuated from '
                 'this host but still exists in the hypervisor',
                 instance=instance)
        try:
            network_info = manager.network_api.get_instance_nw_info(
                context, instance)
            bdi = manager._get_instance_block_device_info(context, instance)
            destroy_disks = not manager._is_instance_storage_shared(
                context, instance, host=migration.dest_compute)
        except nova_exception.InstanceNotFound:
            network_info = network_model.NetworkInfo()
            bdi = {}
            LOG.info('Instance has been marked deleted already, '
                     'removing it from the hypervisor.', instance=instance)
            destroy_disks = True
        manager.driver.destroy(context, instance, network_info, bdi,
                               destroy_disks)

    @staticmethod
    def _finish_as_nova(manager, context, instance, local, migration,
                        hostname_to_cn_uuid):
        """This node's allocation removed and the evacuation completed, as
        ``ComputeManager._destroy_evacuated_instances`` does. False when
        nova would skip it.
        """
        if instance is None or (instance.deleted and not local):
            # nova: the instance is deleted, its allocations with it.
            return False
        LOG.info('Cleaning up allocations of the instance as it has been '
                 'evacuated from this host', instance=instance)
        if migration.source_node not in hostname_to_cn_uuid:
            LOG.error('Failed to clean allocation of evacuated instance as '
                      'the source node %s is not found',
                      migration.source_node, instance=instance)
            return False
        cn_uuid = hostname_to_cn_uuid[migration.source_node]
        if (not instance.deleted and not manager.reportclient.
                remove_provider_tree_from_instance_allocation(
                    context, instance.uuid, cn_uuid)):
            LOG.error('Failed to clean allocation of evacuated instance on '
                      'the source node %s', cn_uuid, instance=instance)
        migration.status = 'completed'
        migration.save()
        return True

    # Kept copies, settled once the evidence is complete ----------------------

    def post_start_hook(self, manager, call_next):
        """nova-compute is up: start looking at the kept evacuations (a
        daemon thread, stopped by :meth:`driver_cleanup_host`).
        """
        result = call_next()
        kept, stop = list(self._kept), self._stop
        if kept and not stop.is_set():
            LOG.info('guardrails %(guard)s: %(n)d evacuation(s) from this '
                     'host not over; looked at every %(every)ss for '
                     '%(timeout)ss', {'guard': self.name, 'n': len(kept),
                                      'every': SETTLE_INTERVAL,
                                      'timeout': SETTLE_TIMEOUT})
            thread = threading.Thread(
                target=self._watch, args=(manager, kept, stop),
                name='guardrails-host-identity-settle', daemon=True)
            thread.start()
        return result

    def driver_cleanup_host(self, manager, host):
        # A stopped nova-compute decides nothing more; its next start-up
        # looks again.
        self._stop.set()

    def _watch(self, manager, kept, stop):
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while kept and not stop.wait(SETTLE_INTERVAL):
            try:
                kept = self._settle(manager, kept, stop)
            except Exception:
                LOG.exception('guardrails %s: could not look at the '
                              'evacuations from this host; looking again '
                              'in %ss', self.name, SETTLE_INTERVAL)
            if kept and time.monotonic() >= deadline and not stop.is_set():
                for entry in kept:
                    self.report.record_runtime(report_mod.Decision(
                        guard=self.name, instance_uuid=entry.instance_uuid,
                        before=None, action='keep', outcome='refused',
                        reason='evacuation %s not settled %ss after '
                               'start-up: the copy stays as it is (powered '
                               'off, disks untouched); the next start-up '
                               'decides again' % (entry.migration_uuid,
                                                  SETTLE_TIMEOUT)))
                return

    def _settle(self, manager, kept, stop):
        """One look at the kept evacuations (four queries, whatever their
        number); returns those still not over.
        """
        context = nova_context.get_admin_context()
        with nova_utils.temporary_mutation(context, read_deleted='yes'):
            migrations = {m.uuid: m for m in
                          objects.MigrationList.get_by_filters(
                              context, {'uuid': [k.migration_uuid
                                                 for k in kept]})}
            instances = {i.uuid: i for i in
                         objects.InstanceList.get_by_filters(
                             context, {'uuid': [k.instance_uuid
                                                for k in kept]})}
        known_hosts = self._known_hosts(context)
        on_driver = set(manager.driver.list_instance_uuids())
        still = []
        nodes = None
        for entry in kept:
            if stop.is_set():
                return []
            migration = migrations.get(entry.migration_uuid)
            instance = instances.get(entry.instance_uuid)
            local = entry.local and entry.instance_uuid in on_driver
            before = (report_mod.InstanceState.of(
                instance, self._power(manager, instance) if local else None)
                if instance is not None else None)
            decision = report_mod.Decision(
                guard=self.name, instance_uuid=entry.instance_uuid,
                before=before, action=None, reason=None)
            if migration is None or migration.status not in (
                    EVACUATION_FILTERS['status']):
                decision.action = 'leave'
                decision.executed_by = 'nova'
                decision.reason = (
                    'evacuation %s is %s: %s left to nova and the operator '
                    '(the instance is %s on host %s)' % (
                        entry.migration_uuid,
                        migration.status if migration else 'gone',
                        'the copy here (powered off, disks untouched) is'
                        if local else 'nothing here is',
                        instance.vm_state if instance else 'gone',
                        instance.host if instance else None))
                decision.after = before
                self.report.record_runtime(decision)
                continue
            if self._missing_evidence(manager, instance, migration,
                                      known_hosts):
                still.append(entry)
                continue
            if (local and self.max_startup_destroys is not None and
                    self._destroyed >= self.max_startup_destroys):
                decision.action = 'keep'
                decision.outcome = 'refused'
                decision.reason = (
                    'evacuated to %s, but destroying the copy would exceed '
                    '[guardrails] max_startup_destroys = %d: kept, powered '
                    'off; the next start-up decides again' % (
                        migration.dest_compute, self.max_startup_destroys))
                decision.after = before
                self.report.record_runtime(decision)
                continue
            if nodes is None:
                nodes = {cn.hypervisor_hostname: cn.uuid for cn in
                         objects.ComputeNodeList.get_all_by_host(
                             context, manager.host)}
            finished = False
            try:
                if local:
                    self._destroy_as_nova(manager, context, instance,
                                          migration)
                    self._destroyed += 1
                finished = self._finish_as_nova(manager, context, instance,
                                                local, migration, nodes)
            except Exception as error:
                decision.outcome = 'failed'
                decision.error = '%s: %s' % (type(error).__name__, error)
            done = []
            if local:
                done.append('the copy destroyed, its disks kept if the '
                            'destination shares them')
            if finished:
                done.append('this node\'s allocation removed, the '
                            'evacuation completed')
            decision.action = ('destroy' if local else
                               'complete' if finished else 'leave')
            decision.reason = (
                '%s; settled after start-up as nova\'s '
                '_destroy_evacuated_instances would: %s' % (
                    self._why_destroy(instance, migration),
                    '; '.join(done) or 'nothing is left to do here'))
            decision.after = (report_mod.InstanceState.of(
                instance, self._power(manager, instance))
                if instance is not None else None)
            self.report.record_runtime(decision)
        return still

    def _power(self, manager, instance):
        try:
            return manager._get_power_state(instance)
        except Exception:
            return None

    def _power_off_and_keep(self, manager, instance, migration, reason):
        before = report_mod.InstanceState.of(instance,
                                             self._power(manager, instance))
        decision = report_mod.Decision(
            guard=self.name, instance_uuid=instance.uuid, before=before,
            action='power_off_keep',
            reason='not destroyed: %s; powered off so it cannot run twice, '
                   'disks untouched' % reason)
        try:
            manager.driver.power_off(instance)
        except Exception as error:
            decision.outcome = 'failed'
            decision.error = '%s: %s' % (type(error).__name__, error)
        power = self._power(manager, instance)
        decision.after = report_mod.InstanceState.of(instance, power)
        self.report.record(decision)
        return power != power_state.RUNNING

    def _refuse_destroys(self, manager, destroy):
        for instance, migration in destroy:
            self.report.record(report_mod.Decision(
                guard=self.name, instance_uuid=instance.uuid,
                before=report_mod.InstanceState(
                    instance.vm_state, instance.task_state, None),
                action='refuse_start', outcome='refused',
                reason='would be destroyed as evacuated to %s, over '
                       '[guardrails] max_startup_destroys' % (
                           migration.dest_compute)))
        raise exception.StartupRefused(reason=(
            'nova-guardrails host_identity: %(n)d guest(s) would be destroyed '
            'at start-up as evacuated to other hosts, more than [guardrails] '
            'max_startup_destroys = %(max)d: %(guests)s. Nothing was '
            'destroyed; the guests still run here and on their new host. '
            'Check the evacuations, then raise or unset '
            'max_startup_destroys and start again.' % {
                'n': len(destroy), 'max': self.max_startup_destroys,
                'guests': _listing(['%s (to %s)' % (i.uuid, m.dest_compute)
                                    for i, m in destroy])}))
