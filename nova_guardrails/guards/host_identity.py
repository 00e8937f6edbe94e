"""The ``host_identity`` guard: one hypervisor, one nova-compute host.

nova bug 1419785 (seed 003): an HA standby nova-compute started with another
``[DEFAULT] host`` over the same hypervisor took the guests for evacuated
ones and destroyed them all. nova >= 27 detects a rename through the node
uuid (``ComputeManager._check_for_host_rename``), and a *new* service over a
hypervisor with guests (``_sanity_check_new_host``), but a standby with its
own service record still starts: it registers a second compute node for the
same hypervisor_hostname (placement counts the machine twice) and leaves
the other host's guests unmanaged.

Start-up checks, from the driver's ``init_host`` (before nova's node checks,
before anything is written or destroyed); either refuses start-up:

* every node the driver reports: a non-deleted compute node with the same
  hypervisor_hostname registered to another host;
* guests on this hypervisor whose instance record belongs to another host,
  with no migration record linking the instance to this host.

Around ``ComputeManager._destroy_evacuated_instances``: a local guest is
destroyed (by nova's own code) only when its instance record points to the
evacuation's destination host and that host's nova-compute service is known.
Otherwise it is powered off and kept, its disks untouched, and reported.
``[guardrails] max_startup_destroys`` caps how many guests may be destroyed.

The ironic driver is refused by the driver wrapper itself (its nodes move
between hosts by design; see ``[guardrails] driver``).
"""

from nova.compute import power_state
from nova import context as nova_context
from nova.objects import fields
from nova import objects
from nova import utils as nova_utils
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


def _listing(items):
    shown = ', '.join(items[:LISTED])
    if len(items) > LISTED:
        shown += ' and %d more' % (len(items) - LISTED)
    return shown


def _ways_out(other_hosts):
    others = ', '.join(sorted(other_hosts))
    return ('If this nova-compute is meant to be host %(other)s, set '
            '[DEFAULT] host = %(other)s in its nova.conf. For a planned '
            'takeover from %(other)s, set [guardrails] allow_takeover_from '
            '= %(other)s and start again. If %(other)s is gone for good, '
            'delete its service record (openstack compute service delete).'
            % {'other': others})


class HostIdentityGuard(base.Guard):
    """Refuse host remapping; destroy evacuated guests on evidence only."""

    def validate(self):
        self.allow_takeover_from = set(
            self.conf.guardrails.allow_takeover_from)
        self.max_startup_destroys = self.conf.guardrails.max_startup_destroys

    # Start-up refusal ------------------------------------------------------

    def driver_init_host(self, manager, host):
        context = nova_context.get_admin_context()
        self._check_nodes(manager, context)
        self._check_guests(manager, context)

    def _taken_over(self, other_host, what):
        if other_host in self.allow_takeover_from:
            LOG.warning('guardrails %s: %s is recorded for host %s; '
                        'proceeding: [guardrails] allow_takeover_from '
                        'names it', self.name, what, other_host)
            return True
        return False

    def _check_nodes(self, manager, context):
        conflicts = []
        for nodename in manager.driver.get_available_nodes(refresh=True):
            for node in objects.ComputeNodeList.get_by_hypervisor(
                    context, nodename):
                if (node.hypervisor_hostname == nodename and
                        node.host != manager.host and
                        not self._taken_over(
                            node.host, 'hypervisor node %s' % nodename)):
                    conflicts.append(node)
        if not conflicts:
            return
        for node in conflicts:
            self.report.record(report_mod.Decision(
                guard=self.name, instance_uuid=None,
                node=node.hypervisor_hostname, before=None,
                action='refuse_start',
                reason='compute node %s of hypervisor %s is registered to '
                       'host %s' % (node.uuid, node.hypervisor_hostname,
                                    node.host), outcome='refused'))
        hosts = {node.host for node in conflicts}
        raise exception.StartupRefused(reason=(
            'nova-guardrails host_identity: hypervisor node(s) %(nodes)s '
            'already registered to host(s) %(hosts)s, but this nova-compute '
            'is host %(this)s. Starting would register the same hypervisor '
            'twice and treat the other host\'s guests as its own (nova bug '
            '1419785). %(out)s' % {
                'nodes': _listing(['%s (compute node %s, host %s)' % (
                    n.hypervisor_hostname, n.uuid, n.host)
                    for n in conflicts]),
                'hosts': ', '.join(sorted(hosts)), 'this': manager.host,
                'out': _ways_out(hosts)}))

    def _check_guests(self, manager, context):
        uuids = manager.driver.list_instance_uuids()
        if not uuids:
            return
        instances = objects.InstanceList.get_by_filters(
            context, {'uuid': uuids}, expected_attrs=[])
        foreign = []
        for instance in instances:
            if not instance.host or instance.host == manager.host:
                continue
            # A guest that is not running cannot run twice: a leftover
            # (say, of a build rescheduled elsewhere) is reported only.
            power = self._power(manager, instance)
            if power == power_state.RUNNING:
                foreign.append(instance)
            else:
                self.report.record(report_mod.Decision(
                    guard=self.name, instance_uuid=instance.uuid,
                    before=report_mod.InstanceState.of(instance, power),
                    action='report',
                    reason='a guest that is not running is on this '
                           'hypervisor, but its instance is recorded on '
                           'host %s' % instance.host))
        if not foreign:
            return
        linked = {m.instance_uuid for m in objects.MigrationList
                  .get_by_filters(context, {'host': manager.host})}
        unexplained = [
            i for i in foreign if i.uuid not in linked and
            not self._taken_over(i.host, 'guest %s' % i.uuid)]
        if not unexplained:
            return
        for instance in unexplained:
            self.report.record(report_mod.Decision(
                guard=self.name, instance_uuid=instance.uuid,
                before=report_mod.InstanceState(
                    instance.vm_state, instance.task_state, None),
                action='refuse_start',
                reason='the guest runs on this hypervisor but its instance '
                       'is recorded on host %s, and no migration links it to '
                       'host %s' % (instance.host, manager.host),
                outcome='refused'))
        hosts = {i.host for i in unexplained}
        raise exception.StartupRefused(reason=(
            'nova-guardrails host_identity: %(n)d guest(s) on this '
            'hypervisor belong to other host(s) and no migration record '
            'links them to this host %(this)s: %(guests)s. Another '
            'nova-compute owns them; this one would manage them as '
            'evacuated or foreign (nova bug 1419785). %(out)s' % {
                'n': len(unexplained), 'this': manager.host,
                'guests': _listing(['%s (host %s)' % (i.uuid, i.host)
                                    for i in unexplained]),
                'out': _ways_out(hosts)}))

    # Evacuated guests ------------------------------------------------------

    def destroy_evacuated_instances(self, manager, context, node_cache,
                                    call_next):
        filters = dict(EVACUATION_FILTERS, source_compute=manager.host)
        with nova_utils.temporary_mutation(context, read_deleted='yes'):
            evacuations = objects.MigrationList.get_by_filters(context,
                                                               filters)
        if not evacuations:
            return call_next(context, node_cache)
        by_instance = {m.instance_uuid: m for m in evacuations}
        local = [i for i in manager._get_instances_on_driver(context)
                 if i.uuid in by_instance]
        destroy, keep = [], []
        try:
            known_hosts = {s.host for s in objects.ServiceList.get_by_binary(
                context, 'nova-compute', include_disabled=True)}
        except Exception as error:
            # Cannot prove anything: keep every candidate (fail closed).
            LOG.exception('guardrails %s: could not read the nova-compute '
                          'services', self.name)
            reason = 'database error reading the evidence (%s: %s)' % (
                type(error).__name__, error)
            keep = [(i, by_instance[i.uuid], reason) for i in local]
            local = []
        for instance in local:
            migration = by_instance[instance.uuid]
            reason = self._missing_evidence(manager, instance, migration,
                                            known_hosts)
            (keep if reason else destroy).append((instance, migration,
                                                  reason))
        if (self.max_startup_destroys is not None and
                len(destroy) > self.max_startup_destroys):
            self._refuse_destroys(manager, destroy)
        still_running = [
            instance for instance, migration, reason in keep
            if not self._power_off_and_keep(manager, instance, migration,
                                            reason)]
        if still_running:
            raise exception.StartupRefused(reason=(
                'nova-guardrails host_identity: %d evacuated guest(s) could '
                'not be powered off and may now run on two hosts: %s. '
                'nova-compute does not start; power them off by hand, then '
                'start again.' % (len(still_running), _listing(
                    [i.uuid for i in still_running]))))
        kept = {instance.uuid for instance, _, _ in keep}
        powers = {i.uuid: self._power(manager, i) for i, _, _ in destroy}
        original = manager._get_instances_on_driver

        def without_kept(context, filters=None):
            return [i for i in original(context, filters)
                    if i.uuid not in kept]

        # nova's own clean-up runs; the kept guests are not shown to it, so
        # it does not destroy them. (It still marks their evacuation
        # completed and removes this node's allocations, as nova alone
        # does.)
        saved = manager.__dict__.get('_get_instances_on_driver')
        manager._get_instances_on_driver = without_kept
        try:
            result = call_next(context, node_cache)
        finally:
            if saved is None:
                del manager._get_instances_on_driver
            else:
                manager._get_instances_on_driver = saved
        for instance, migration, _ in destroy:
            self.report.record(report_mod.Decision(
                guard=self.name, instance_uuid=instance.uuid,
                before=report_mod.InstanceState.of(
                    instance, powers[instance.uuid]),
                action='destroy', executed_by='nova',
                reason='evacuated to %s: the instance is recorded there '
                       'and its nova-compute service is known' % (
                           migration.dest_compute),
                after=report_mod.InstanceState.of(
                    instance, self._power(manager, instance))))
        return result

    @staticmethod
    def _missing_evidence(manager, instance, migration, known_hosts):
        """Why destroying the local guest is not proven, or None."""
        if instance.host == manager.host:
            return ('evacuation %s is %s and the instance is still recorded '
                    'on this host' % (migration.uuid, migration.status))
        if instance.host != migration.dest_compute:
            return ('the instance is recorded on host %s, not on the '
                    'evacuation\'s destination %s' % (
                        instance.host, migration.dest_compute))
        if migration.dest_compute not in known_hosts:
            return ('the evacuation\'s destination %s has no nova-compute '
                    'service record' % migration.dest_compute)
        return None

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
        for instance, migration, _ in destroy:
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
                                    for i, m, _ in destroy])}))

