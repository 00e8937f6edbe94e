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

The guard is split into modules: :mod:`.actions` (the table's action
registry and executors), :mod:`.sweeps` (the start-up sweeps, run after
nova's ``init_host``) and :mod:`.deferred` (requests that may still be
queued: deferred, then re-checked after the grace period).
"""

import dataclasses

from nova.compute import utils as compute_utils
from nova.compute import vm_states
from nova import exception as nova_exception
from oslo_config import cfg
from oslo_db import exception as db_exception
from oslo_log import log as logging
import oslo_messaging

from nova import objects

from nova_guardrails import exception
from nova_guardrails.guards import base
from nova_guardrails.guards.recovery_table import actions
from nova_guardrails.guards.recovery_table import deferred
from nova_guardrails.guards.recovery_table import sweeps
from nova_guardrails import queued
from nova_guardrails import recovery
from nova_guardrails import report as report_mod

LOG = logging.getLogger(__name__)

#: Errors that are not about one instance: start-up stops, as with nova
#: alone.
SYSTEMIC = (exception.StartupRefused, db_exception.DBConnectionError,
            oslo_messaging.MessagingTimeout)


class RecoveryTableGuard(deferred.QueuedRechecks, base.Guard):
    """Apply :data:`nova_guardrails.recovery.RULES` at start-up, with the
    operator's ``[guardrails] recovery_overrides``.

    A request still queued for this host (:mod:`nova_guardrails.queued`) is
    left alone and looked at again ``[guardrails] queued_grace_seconds``
    after start-up: if nothing moved by then, the table applies.
    """

    CONFIG_OPTS = [
        cfg.DictOpt(
            'recovery_overrides',
            default={},
            help='``recovery_table`` guard: per task_state, the action to '
                 'take at start-up instead of the table\'s, as '
                 '``task_state:action`` pairs separated by commas, for '
                 'example ``resize_reverting:error, shelving:leave``. The '
                 'action applies in every vm_state (but soft-deleted, '
                 'deleted and building, which nova settles first) and for '
                 'every power state. Actions: ``clear`` (task_state None), '
                 '``clear_to_guest`` (task_state None, vm_state from the '
                 'guest\'s power state), ``error`` (vm_state error, '
                 'task_state None), ``leave`` (nothing, for an operator to '
                 'settle). An unknown task_state or action stops '
                 'nova-compute at start-up. ``nova-guardrails table '
                 '--config-file nova.conf`` prints the effective table.'),
        cfg.IntOpt(
            'queued_grace_seconds',
            min=0,
            default=120,
            help='``recovery_table`` guard: seconds after start-up before '
                 'an instance whose request is still queued for this host '
                 'is decided by the table. A task_state nova-api sets '
                 '(rebooting, suspending, ...) with no ``compute_*`` event '
                 'on the instance\'s latest instance action means the '
                 'request never reached a compute: it is left alone so '
                 'that it runs once, and looked at again after this many '
                 'seconds; if its task_state did not move by then, the '
                 'table applies. 0: no wait, every instance is decided at '
                 'start-up as an interrupted one.'),
    ]

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
        """The effective table (``recovery_overrides`` applied): every
        action it gives to nova-guardrails has an executor, else start-up
        stops (GuardrailsConfigError names the option for a bad override;
        TableError for a table the code cannot run).
        """
        self.rules = recovery.effective_rules(
            self.conf.guardrails.recovery_overrides)
        runnable = {name for name, action in actions.ACTIONS.items()
                    if action.run is not None}
        missing = {rule.action for rule in self.rules
                   if rule.by == recovery.BY_GUARDRAILS} - runnable
        if missing:
            raise recovery.TableError('recovery_table: no executor for %s'
                                      % sorted(missing))
        self.index = recovery.build_index(self.rules, actions.ACTIONS)

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
        for sweep_class in sweeps.SWEEPS:
            sweep = sweep_class(self, manager, service_ref, grace)
            # A sweep whose query fails is skipped, as one instance's
            # failure is: start-up goes on (systemic errors excepted).
            try:
                sweep.run()
            except SYSTEMIC:
                raise
            except Exception:
                LOG.exception('guardrails recovery_table: start-up check %s '
                              'failed; nova-compute starts without it',
                              sweep.name)
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
            actions._save(instance, vm_state=vm_states.ERROR,
                          task_state=None)
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
        if instance.obj_attr_is_set('hidden') and instance.hidden:
            # Never queued or deferred: _decide leaves it to nova.
            return self._decide(manager, context, instance, call_next)
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
        if instance.obj_attr_is_set('hidden') and instance.hidden:
            # The source cell's copy of a cross-cell resize (nova's
            # conductor/tasks/cross_cell_migrate.py hides it once the
            # destination finished): nova-conductor deletes it at the
            # confirm and restores from it at the revert (its old_flavor,
            # its task_state); nothing at start-up may change it.
            decision.reason = prefix + recovery.HIDDEN_REASON
            self._run(decision, lambda: call_next(context, instance),
                      manager, instance, runtime)
            return None
        power_name = decision.before.power_state
        rule = self.index.get((instance.task_state, instance.vm_state,
                               power_name))
        if lost_request and rule is not None and \
                instance.task_state in deferred.LOST_REQUEST_CLEARED:
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
            execute = actions.ACTIONS[rule.action].run

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
