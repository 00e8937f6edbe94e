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

from nova.compute import task_states
from nova.compute import vm_states
from nova import exception as nova_exception
from oslo_db import exception as db_exception
from oslo_log import log as logging
import oslo_messaging

from nova_guardrails import exception
from nova_guardrails.guards import base
from nova_guardrails import recovery
from nova_guardrails import report as report_mod

LOG = logging.getLogger(__name__)

#: Errors that are not about one instance: start-up stops, as with nova
#: alone.
SYSTEMIC = (exception.StartupRefused, db_exception.DBConnectionError,
            oslo_messaging.MessagingTimeout)


def _save(instance, **changes):
    """Save ``changes`` only if the task_state is still the one decided on
    (raises UnexpectedTaskStateError otherwise)."""
    expected = instance.task_state
    for field, value in changes.items():
        setattr(instance, field, value)
    instance.save(expected_task_state=[expected])


def _clear(manager, context, instance):
    _save(instance, task_state=None)
    return True


def _clear_active(manager, context, instance):
    _save(instance, task_state=None, vm_state=vm_states.ACTIVE)
    return True


def _reboot_soft(manager, context, instance):
    manager.reboot_instance(context, instance, block_device_info=None,
                            reboot_type='SOFT')
    return False


def _reboot_hard(manager, context, instance):
    # ComputeManager._reboot_instance saves with expected_task_state in
    # hard_reboot_states; from a soft reboot state that save raises
    # UnexpectedTaskStateError (nova bug 1072751). nova 34's _init_instance
    # rewrites it too (NOTE(mikal)); here the rewrite is explicit.
    if instance.task_state not in task_states.hard_reboot_states:
        _save(instance, task_state=task_states.REBOOT_PENDING_HARD)
    manager.reboot_instance(context, instance, block_device_info=None,
                            reboot_type='HARD')
    return False


#: How nova-guardrails runs the ``by='guardrails'`` actions:
#: ``f(manager, context, instance) -> bool``, True when nova's
#: ``_init_instance`` should then run its normal start-up path.
EXECUTORS = {
    'clear': _clear,
    'clear_active': _clear_active,
    'reboot_soft': _reboot_soft,
    'reboot_hard': _reboot_hard,
}


class RecoveryTableGuard(base.Guard):
    """Apply :data:`nova_guardrails.recovery.RULES` at start-up."""

    def validate(self):
        missing = {rule.action for rule in recovery.RULES
                   if rule.by == recovery.BY_GUARDRAILS} - set(EXECUTORS)
        if missing:
            raise recovery.TableError('recovery_table: no executor for %s'
                                      % sorted(missing))

    def init_instance(self, manager, context, instance, call_next):
        if instance.task_state is None or instance.host != manager.host:
            return call_next(context, instance)
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
                      manager, instance)
            return None
        decision.before = report_mod.InstanceState.of(instance, power)
        rule = recovery.lookup(instance.task_state, instance.vm_state,
                               decision.before.power_state)
        if rule is None:
            decision.action = 'unlisted'
            decision.reason = ('task_state not in this release\'s recovery '
                               'table: left to nova\'s _init_instance')
            run = lambda: call_next(context, instance)  # noqa: E731
        elif rule.by == recovery.BY_NOVA:
            decision.action, decision.reason = rule.action, rule.reason
            run = lambda: call_next(context, instance)  # noqa: E731
        else:
            decision.action, decision.reason = rule.action, rule.reason
            decision.executed_by = recovery.BY_GUARDRAILS
            execute = EXECUTORS[rule.action]

            def run():
                if execute(manager, context, instance):
                    call_next(context, instance)
        self._run(decision, run, manager, instance)
        return None

    def _run(self, decision, run, manager, instance):
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
