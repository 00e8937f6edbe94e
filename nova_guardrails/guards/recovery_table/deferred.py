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
"""The ``recovery_table`` guard's queued requests: defer, then re-check.

A transitional task_state set by nova-api may mean the request is still
queued for this host (:mod:`nova_guardrails.queued`), not interrupted. Such
an instance is left alone at start-up (:meth:`QueuedRechecks._defer`: one
``queued`` report row), and looked at again ``[guardrails]
queued_grace_seconds`` after nova-compute's RPC server started, on a daemon
timer (:meth:`QueuedRechecks._schedule`). Then
(:meth:`QueuedRechecks._recheck`) an instance whose task_state did not move
and whose request no compute took up is decided by the table, as an
interrupted one; the request ledger
(:class:`nova_guardrails.queued.RequestLedger`) keeps a request the
recovery took over from running a second time when its message is
delivered late.
"""

import dataclasses
import threading

from nova.compute import task_states
from nova.compute import vm_states
from nova import context as nova_context
from nova import exception as nova_exception
from oslo_log import log as logging

from nova import objects
from nova import servicegroup

from nova_guardrails import queued
from nova_guardrails import recovery
from nova_guardrails import report as report_mod

#: The guard's logger (see :mod:`.actions`).
LOG = logging.getLogger(__package__)


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


class QueuedRechecks:
    """The deferred/queued half of the guard, mixed into
    :class:`~nova_guardrails.guards.recovery_table.RecoveryTableGuard`.

    Uses the guard's ``name``, ``report``, ``_ledger`` (the request
    ledger), ``_deferred`` (the :class:`_Deferred` entries of this
    start-up), ``_timer``, ``_stopping`` and its ``_decide``, ``_run``,
    ``_power``, ``_state_after`` and ``_fail_evacuation``.
    """

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
