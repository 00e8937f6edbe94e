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
* an action that raises sets that one instance to error and start-up goes
  on; nova alone lets the exception out of ``init_host`` and nova-compute
  does not start.
"""

from nova.compute import task_states
from nova.compute import vm_states
from oslo_log import log as logging

from nova_guardrails.guards import base
from nova_guardrails import recovery
from nova_guardrails import report as report_mod

LOG = logging.getLogger(__name__)


def _save(instance, expected_task_state, **changes):
    for field, value in changes.items():
        setattr(instance, field, value)
    instance.save(expected_task_state=[expected_task_state])


def _clear(manager, context, instance, nova_init_instance):
    _save(instance, instance.task_state, task_state=None)
    nova_init_instance(context, instance)


def _clear_active(manager, context, instance, nova_init_instance):
    _save(instance, instance.task_state, task_state=None,
          vm_state=vm_states.ACTIVE)
    nova_init_instance(context, instance)


def _reboot_soft(manager, context, instance, nova_init_instance):
    manager.reboot_instance(context, instance, block_device_info=None,
                            reboot_type='SOFT')


def _reboot_hard(manager, context, instance, nova_init_instance):
    # ComputeManager._reboot_instance saves with expected_task_state in
    # hard_reboot_states; from a soft reboot state that save raises
    # UnexpectedTaskStateError (bug 1072751), hence the rewrite first.
    if instance.task_state not in task_states.hard_reboot_states:
        _save(instance, instance.task_state,
              task_state=task_states.REBOOT_PENDING_HARD)
    manager.reboot_instance(context, instance, block_device_info=None,
                            reboot_type='HARD')


#: How nova-guardrails runs the ``by='guardrails'`` actions.
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
            action='leave', reason='')
        try:
            power = manager._get_power_state(instance)
        except Exception as error:
            # Cannot decide: touch nothing (fail closed).
            decision.reason = ('the power state could not be read from the '
                               'hypervisor; nothing done')
            decision.outcome = 'failed'
            decision.error = str(error)
            decision.after = decision.before
            self.report.record(decision)
            return None
        decision.before = report_mod.InstanceState.of(instance, power)
        rule = recovery.lookup(instance.task_state, instance.vm_state,
                               decision.before.power_state)
        if rule is None:
            decision.action = 'unlisted'
            decision.reason = ('task_state not in this release\'s recovery '
                               'table: nova\'s _init_instance decides')
            decision.executed_by = recovery.BY_NOVA
            run = call_next
        else:
            decision.action = rule.action
            decision.reason = rule.reason
            decision.executed_by = rule.by
            if rule.by == recovery.BY_NOVA:
                run = call_next
            else:
                execute = EXECUTORS[rule.action]

                def run(context, instance):
                    return execute(manager, context, instance, call_next)
        try:
            run(context, instance)
        except Exception as error:
            decision.outcome = 'failed'
            decision.error = '%s: %s' % (type(error).__name__, error)
            LOG.exception('guardrails %s: action %s failed; setting the '
                          'instance to error so start-up goes on',
                          self.name, decision.action, instance=instance)
            try:
                manager._set_instance_obj_error_state(
                    instance, clean_task_state=True)
            except Exception:
                LOG.exception('guardrails %s: could not set the instance '
                              'to error', self.name, instance=instance)
        decision.after = self._state_after(manager, instance)
        self.report.record(decision)
        return None

    @staticmethod
    def _state_after(manager, instance):
        try:
            power = manager._get_power_state(instance)
        except Exception:
            power = None
        return report_mod.InstanceState.of(instance, power)
