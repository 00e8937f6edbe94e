"""The recovery table: (task_state, vm_state, power state) -> action.

At nova-compute start-up no request of this host can be running, so an
instance still in a transitional task_state was interrupted (or is still
queued, see below). This module is the table the ``recovery_table`` guard
applies to each of them. It is data: :data:`RULES` is a list of
:class:`Rule`, each naming sets of task_states, vm_states and power states,
an action and a one-line reason. The rows are checked when this module is
imported: no key (task_state, vm_state, power_state) may match two rows, and
every task_state a row names is covered for every vm_state and power state
of the installed nova, so a lookup never falls through.

Actions (:data:`ACTIONS`); ``by`` tells who runs it:

* ``by='guardrails'``: nova-guardrails runs the action itself, then hands the
  instance to nova's ``_init_instance`` where the action says so.
* ``by='nova'``: nova's own ``ComputeManager._init_instance`` runs, unchanged;
  the action names what it does for that key in nova 34, so the table also
  documents what nova alone does (and where it leaves an instance stuck:
  ``leave``).

This release covers the six reboot task_states (nova bug 1072751, seed 000)
and every task_state nova 34's ``_init_instance`` handles. Other task_states
are reported as ``unlisted`` and left to nova.

A transitional task_state set by nova-api (``rebooting``,
``rebooting_hard``, ...) may also mean the request is still queued for this
host; this release treats it as nova 34 does.
"""

import dataclasses
import itertools

from nova.compute import task_states as ts
from nova.compute import vm_states as vs
from nova.objects import fields

#: Every vm_state, task_state and power state name of the installed nova.
ALL_VM_STATES = frozenset(fields.InstanceState.ALL)
ALL_TASK_STATES = frozenset(fields.InstanceTaskState.ALL)
ALL_POWER_STATES = frozenset(
    s for s in fields.InstancePowerState.ALL
    if s != fields.InstancePowerState._UNUSED)

RUNNING = frozenset([fields.InstancePowerState.RUNNING])
PAUSED = frozenset([fields.InstancePowerState.PAUSED])
NOT_RUNNING = ALL_POWER_STATES - RUNNING
ANY_POWER = ALL_POWER_STATES

#: Action vocabulary: name -> (what it does, the state it ends in).
ACTIONS = {
    'clear': 'set task_state None; then nova\'s normal start-up path '
             '(VIFs plugged; with resume_guests_state_on_host_boot, a guest '
             'recorded running but found off is started)',
    'clear_active': 'set task_state None and vm_state active (the guest '
                    'runs); then nova\'s normal start-up path',
    'reboot_soft': 'run the soft reboot again (ComputeManager.'
                   'reboot_instance SOFT)',
    'reboot_hard': 'rewrite task_state to reboot_pending_hard, then run a '
                   'HARD reboot (ComputeManager.reboot_instance HARD)',
    'error': 'set vm_state error and task_state None',
    'skip': 'nothing: nova\'s _init_instance returns early; the instance '
            'keeps its task_state',
    'leave': 'the instance keeps its task_state (stuck until an operator '
             'resets it); nova\'s normal start-up path still runs',
    'complete_deletion': 'finish deleting the database records '
                         '(ComputeManager._complete_partial_deletion)',
    'rerun_delete': 'delete the instance again (ComputeManager.'
                    '_delete_instance)',
    'rerun_stop': 'stop the instance again (ComputeManager.stop_instance)',
    'rerun_start': 'start the instance again (ComputeManager.start_instance)',
    'unpause': 'unpause the guest (ComputeManager.unpause_instance)',
    'revert_resize': 'revert the interrupted resize on this host (driver '
                     'finish_revert_migration), then task_state None (if '
                     'plugging VIFs fails first: vm_state error, task_state '
                     'kept)',
    'reset_live_migration': 'abort the live migration and reset its state '
                            '(ComputeManager._reset_live_migration)',
}

BY_GUARDRAILS = 'guardrails'
BY_NOVA = 'nova'


@dataclasses.dataclass(frozen=True)
class Rule:
    """One row of the recovery table.

    :ivar task_states: task_states this row applies to.
    :ivar vm_states: vm_states this row applies to.
    :ivar power_states: power state names read from the hypervisor
        (``nova.objects.fields.InstancePowerState``: ``running``,
        ``shutdown``, ``pending`` when the hypervisor has no such guest...).
    :ivar action: a key of :data:`ACTIONS`.
    :ivar by: ``'guardrails'`` or ``'nova'``.
    :ivar reason: one line: why.
    """

    task_states: frozenset
    vm_states: frozenset
    power_states: frozenset
    action: str
    by: str
    reason: str

    def keys(self):
        return itertools.product(self.task_states, self.vm_states,
                                 self.power_states)


def _rule(task_states, vm_states, power_states, action, by, reason):
    return Rule(frozenset(task_states), frozenset(vm_states),
                frozenset(power_states), action, by, reason)


SOFT_REBOOT = frozenset(ts.soft_reboot_states)
HARD_REBOOT = frozenset(ts.hard_reboot_states)
REBOOT = SOFT_REBOOT | HARD_REBOOT
BUILD = frozenset([ts.SCHEDULING, ts.BLOCK_DEVICE_MAPPING, ts.NETWORKING,
                   ts.SPAWNING])
REBUILD = frozenset([ts.REBUILDING, ts.REBUILD_BLOCK_DEVICE_MAPPING,
                     ts.REBUILD_SPAWNING])
SNAPSHOT = frozenset([ts.IMAGE_SNAPSHOT, ts.IMAGE_SNAPSHOT_PENDING,
                      ts.IMAGE_PENDING_UPLOAD, ts.IMAGE_UPLOADING])
#: task_states nova 34's ComputeManager._init_instance handles (25 of 42).
NOVA_HANDLED = (REBOOT | BUILD | REBUILD | SNAPSHOT | frozenset([
    ts.RESIZE_PREP, ts.DELETING, ts.POWERING_OFF, ts.POWERING_ON,
    ts.PAUSING, ts.UNPAUSING, ts.RESIZE_MIGRATING, ts.MIGRATING]))
COVERED = NOVA_HANDLED

#: vm_states nova's _init_instance settles before it looks at task_state.
PRECEDING_VM = frozenset([vs.SOFT_DELETED, vs.DELETED, vs.BUILDING])
OTHER_VM = ALL_VM_STATES - PRECEDING_VM
LIVE_VM = OTHER_VM - {vs.ERROR}
SOFT_REBOOT_VM = frozenset(vs.ALLOW_SOFT_REBOOT)
HARD_REBOOT_VM = frozenset(vs.ALLOW_HARD_REBOOT)
#: task_states nova's _init_instance handles even in vm_state error.
ERROR_HANDLED_BY_NOVA = frozenset([ts.RESIZE_MIGRATING, ts.DELETING])

G, N = BY_GUARDRAILS, BY_NOVA

RULES = [
    # vm_states nova settles first, whatever the task_state.
    _rule(COVERED, [vs.SOFT_DELETED], ANY_POWER, 'skip', N,
          'soft-deleted: left to the reclaim periodic task'),
    _rule(COVERED, [vs.DELETED], ANY_POWER, 'complete_deletion', N,
          'deleted in the database: finish the partial deletion'),
    _rule(COVERED, [vs.BUILDING], ANY_POWER, 'error', N,
          'compute stopped before the build finished'),
    _rule(NOVA_HANDLED - REBOOT - ERROR_HANDLED_BY_NOVA, [vs.ERROR],
          ANY_POWER, 'skip', N,
          'nova skips instances in vm_state error at start-up'),

    # Soft reboot (seed 000, nova bug 1072751).
    _rule([ts.REBOOTING, ts.REBOOT_STARTED], SOFT_REBOOT_VM, RUNNING,
          'clear_active', G,
          'the guest runs: the reboot completed or never reached it; no '
          'second reboot (as nova; a guest still shutting down is stopped '
          'later by the power-state sync)'),
    _rule([ts.REBOOTING, ts.REBOOT_STARTED], SOFT_REBOOT_VM, NOT_RUNNING,
          'reboot_hard', G,
          'interrupted after the guest was shut down: retried as HARD, '
          'task_state rewritten first (bug 1072751)'),
    _rule([ts.REBOOT_PENDING], SOFT_REBOOT_VM, RUNNING, 'reboot_soft', G,
          'acknowledged by this host, driver reboot not started: run it'),
    _rule([ts.REBOOT_PENDING], SOFT_REBOOT_VM, NOT_RUNNING, 'reboot_hard', G,
          'acknowledged, guest not running: retried as HARD, task_state '
          'rewritten first (bug 1072751)'),
    _rule(SOFT_REBOOT, OTHER_VM - SOFT_REBOOT_VM, ANY_POWER, 'clear', G,
          'nova-api accepts no soft reboot in this vm_state: stale '
          'task_state cleared, guest untouched'),

    # Hard reboot.
    _rule([ts.REBOOT_PENDING_HARD], HARD_REBOOT_VM, ANY_POWER,
          'reboot_hard', G,
          'acknowledged by this host, driver reboot not started: run it '
          '(in vm_state error nova alone leaves it stuck)'),
    _rule([ts.REBOOTING_HARD, ts.REBOOT_STARTED_HARD], HARD_REBOOT_VM,
          NOT_RUNNING, 'reboot_hard', G,
          'interrupted with the guest not running: run the HARD reboot '
          '(in vm_state error nova alone leaves it stuck)'),
    _rule([ts.REBOOT_STARTED_HARD], HARD_REBOOT_VM, RUNNING,
          'clear_active', G,
          'the guest runs again: the driver finished the reboot'),
    _rule([ts.REBOOTING_HARD], HARD_REBOOT_VM - {vs.ERROR}, RUNNING,
          'clear_active', G,
          'the guest runs and the reboot never started on this host: '
          'dropped, as nova does (a request still queued is issue 3\'s)'),
    _rule([ts.REBOOTING_HARD], [vs.ERROR], RUNNING, 'reboot_hard', G,
          'a hard reboot asked to reset an instance in error never '
          'started: run it rather than declare the instance active'),
    _rule(HARD_REBOOT, OTHER_VM - HARD_REBOOT_VM, ANY_POWER, 'clear', G,
          'nova-api accepts no hard reboot in this vm_state: stale '
          'task_state cleared, guest untouched'),

    # What nova 34's _init_instance does for the other states it handles.
    _rule(BUILD, LIVE_VM, ANY_POWER, 'error', N,
          'compute stopped before the guest was spawned'),
    _rule(REBUILD, [vs.ACTIVE, vs.STOPPED], ANY_POWER, 'error', N,
          'compute stopped before the rebuild finished'),
    _rule(REBUILD, LIVE_VM - {vs.ACTIVE, vs.STOPPED}, ANY_POWER, 'leave', N,
          'nova handles rebuild states only in vm_state active/stopped'),
    _rule(SNAPSHOT, LIVE_VM, ANY_POWER, 'clear', N,
          'the snapshot was abandoned; the guest is untouched'),
    _rule([ts.RESIZE_PREP], LIVE_VM, ANY_POWER, 'clear', N,
          'the resize never left this host'),
    _rule([ts.DELETING], OTHER_VM, ANY_POWER, 'rerun_delete', N,
          'the deletion was asked for: finish it'),
    _rule([ts.POWERING_OFF], LIVE_VM, ANY_POWER, 'rerun_stop', N,
          'the stop was asked for: run it again'),
    _rule([ts.POWERING_ON], LIVE_VM, ANY_POWER, 'rerun_start', N,
          'the start was asked for: run it again'),
    _rule([ts.PAUSING, ts.UNPAUSING], LIVE_VM, RUNNING, 'clear_active', N,
          'the guest runs: task_state cleared'),
    _rule([ts.UNPAUSING], LIVE_VM, PAUSED, 'unpause', N,
          'the guest is still paused: unpause it'),
    _rule([ts.UNPAUSING], LIVE_VM, NOT_RUNNING - PAUSED, 'leave', N,
          'nova handles unpausing only with the guest running or paused'),
    _rule([ts.PAUSING], LIVE_VM, NOT_RUNNING, 'leave', N,
          'nova handles pausing only with the guest running'),
    _rule([ts.RESIZE_MIGRATING], OTHER_VM, ANY_POWER, 'revert_resize', N,
          'the resize was interrupted on the source: roll it back'),
    _rule([ts.MIGRATING], LIVE_VM, ANY_POWER, 'reset_live_migration', N,
          'the live migration was interrupted: abort and reset it'),
]

del G, N


class TableError(Exception):
    """The recovery table is malformed (a developer error)."""


def build_index(rules):
    """``{(task_state, vm_state, power_state): Rule}`` for ``rules``.

    :raises TableError: an unknown state name or action, a key matched by
        two rows, or a task_state not covered for every (vm_state, power
        state) of the installed nova.
    """
    index = {}
    for rule in rules:
        if rule.action not in ACTIONS:
            raise TableError('unknown action %r' % rule.action)
        if rule.by not in (BY_GUARDRAILS, BY_NOVA):
            raise TableError('unknown executor %r' % rule.by)
        for states, known, what in (
                (rule.task_states, ALL_TASK_STATES, 'task_state'),
                (rule.vm_states, ALL_VM_STATES, 'vm_state'),
                (rule.power_states, ALL_POWER_STATES, 'power state')):
            if not states:
                raise TableError('a row has no %s: %r' % (what, rule))
            if states - known:
                raise TableError('unknown %s %s' % (what, sorted(states -
                                                               known)))
        for key in rule.keys():
            if key in index:
                raise TableError('%r matches two rows: %r and %r' % (
                    key, index[key].reason, rule.reason))
            index[key] = rule
    for task_state in {t for rule in rules for t in rule.task_states}:
        for vm_state, power in itertools.product(ALL_VM_STATES,
                                                 ALL_POWER_STATES):
            if (task_state, vm_state, power) not in index:
                raise TableError('task_state %s is not covered for '
                                 'vm_state %s, power state %s' % (
                                     task_state, vm_state, power))
    return index


INDEX = build_index(RULES)
COVERED_TASK_STATES = frozenset(t for t, _, _ in INDEX)


def lookup(task_state, vm_state, power_state):
    """The :class:`Rule` for a key, or ``None`` for an unlisted task_state.

    :param task_state: ``instance.task_state`` (not ``None``).
    :param vm_state: ``instance.vm_state``.
    :param power_state: power state *name* (see :class:`Rule`).
    """
    return INDEX.get((task_state, vm_state, power_state))
