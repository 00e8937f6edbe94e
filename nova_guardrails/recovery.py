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

Actions: the ``recovery_table`` guard's registry
(:data:`nova_guardrails.guards.recovery_table.actions.ACTIONS`) names and
describes them, and runs the ``by='guardrails'`` ones; this module only
names them (it stays light to import: the operator tools read the table
without the guard). ``by`` tells who runs an action:

* ``by='guardrails'``: nova-guardrails runs the action itself, then hands the
  instance to nova's ``_init_instance`` where the action says so.
* ``by='nova'``: nova's own ``ComputeManager._init_instance`` runs, unchanged;
  the action names what it does for that key in nova 34, so the table also
  documents what nova alone does (and where it leaves an instance stuck:
  ``leave``).

The table covers every task_state of the installed nova (42 in nova 34):
the 25 nova 34's ``_init_instance`` handles, with at least nova's behaviour,
and the 17 it leaves stuck (blueprint "recover from stuck states"). A
nova release that adds a task_state fails the import check, naming it.

A transitional task_state set by nova-api (``rebooting``, ``suspending``,
...) may also mean the request is still queued for this host: see
:mod:`nova_guardrails.queued`.
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
#: The hypervisor has no guest for the instance.
NO_GUEST = frozenset([fields.InstancePowerState.NOSTATE])
PAUSED = frozenset([fields.InstancePowerState.PAUSED])
NOT_RUNNING = ALL_POWER_STATES - RUNNING
ANY_POWER = ALL_POWER_STATES

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
    :ivar action: an action's name (a key of
        :data:`nova_guardrails.guards.recovery_table.actions.ACTIONS`).
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
#: task_states nova 34's ComputeManager._init_instance handles (25 of 42,
#: some only in some vm_states or power states).
NOVA_HANDLED = (REBOOT | BUILD | REBUILD | SNAPSHOT | frozenset([
    ts.RESIZE_PREP, ts.DELETING, ts.POWERING_OFF, ts.POWERING_ON,
    ts.PAUSING, ts.UNPAUSING, ts.RESIZE_MIGRATING, ts.MIGRATING]))
SHELVE = frozenset([ts.SHELVING, ts.SHELVING_IMAGE_PENDING_UPLOAD,
                    ts.SHELVING_IMAGE_UPLOADING])
#: task_states of a cold migration or resize that this host can only roll
#: back to the migration's source (the finish on the destination needs the
#: source's disk_info, which nova does not keep).
RESIZE_ROLLBACK = frozenset([ts.RESIZE_MIGRATED,
                             ts.RESIZE_REVERTING])
#: task_states nova 34 leaves untouched at start-up: an instance caught in
#: one stays stuck with nova alone (17, blueprint "recover from stuck
#: states").
NOT_HANDLED_BY_NOVA = ALL_TASK_STATES - NOVA_HANDLED
#: Every task_state: the table covers them all (checked at import).
COVERED = ALL_TASK_STATES

#: vm_states nova's _init_instance settles before it looks at task_state.
PRECEDING_VM = frozenset([vs.SOFT_DELETED, vs.DELETED, vs.BUILDING])
OTHER_VM = ALL_VM_STATES - PRECEDING_VM
LIVE_VM = OTHER_VM - {vs.ERROR}
SOFT_REBOOT_VM = frozenset(vs.ALLOW_SOFT_REBOOT)
HARD_REBOOT_VM = frozenset(vs.ALLOW_HARD_REBOOT)
#: vm_states nova-api shelves from (nova.compute.api.API.shelve).
SHELVE_VM = frozenset([vs.ACTIVE, vs.STOPPED, vs.PAUSED, vs.SUSPENDED])
#: task_states nova's _init_instance handles even in vm_state error.
ERROR_HANDLED_BY_NOVA = frozenset([ts.RESIZE_MIGRATING, ts.DELETING])
#: task_states a soft-deleted instance can be caught in and is recovered
#: from by its own row.
SOFT_DELETED_HANDLED = frozenset([ts.DELETING, ts.RESTORING])

G, N = BY_GUARDRAILS, BY_NOVA

STALE = ('nova-api never sets this task_state in this vm_state: stale '
         'task_state cleared, guest untouched')

RULES = [
    # vm_states nova settles first, whatever the task_state.
    _rule(COVERED - SOFT_DELETED_HANDLED, [vs.SOFT_DELETED], ANY_POWER,
          'clear', G,
          'soft-deleted: the stale task_state is cleared so that the reclaim '
          'periodic task (it takes task_state None only) and a restore can '
          'act; nova alone skips it and it stays stuck'),
    _rule([ts.DELETING], [vs.SOFT_DELETED], ANY_POWER, 'rerun_delete', G,
          'a soft-deleted instance was being deleted for good: finish it '
          '(nova alone skips soft-deleted instances: stuck)'),
    _rule([ts.RESTORING], [vs.SOFT_DELETED], ANY_POWER, 'rerun_restore', G,
          'the restore of a soft-deleted instance was asked for: run it '
          '(nova alone skips soft-deleted instances: stuck)'),
    _rule(COVERED, [vs.DELETED], ANY_POWER, 'complete_deletion', N,
          'deleted in the database: finish the partial deletion'),
    _rule(COVERED, [vs.BUILDING], ANY_POWER, 'error', N,
          'compute stopped before the build finished'),
    _rule(COVERED - REBOOT - ERROR_HANDLED_BY_NOVA, [vs.ERROR], ANY_POWER,
          'clear', G,
          'already in error: the stale task_state is cleared so that '
          'nova-api accepts a reset (hard reboot, rebuild, delete); guest '
          'untouched (nova alone skips it: stuck)'),

    # Soft reboot (nova bug 1072751).
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
          'dropped, as nova does (a request still queued is left to run, '
          'see queued_grace_seconds)'),
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
    _rule(REBUILD, LIVE_VM - {vs.ACTIVE, vs.STOPPED}, ANY_POWER, 'error', G,
          'compute stopped before the rebuild finished: the guest may be '
          'gone (nova handles rebuild states only in vm_state '
          'active/stopped and leaves this one stuck)'),
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
    _rule([ts.UNPAUSING], LIVE_VM, NOT_RUNNING - PAUSED, 'clear_to_guest', G,
          'the guest is neither running nor paused: vm_state follows it '
          '(nova handles unpausing only with the guest running or paused '
          'and leaves this one stuck)'),
    _rule([ts.PAUSING], LIVE_VM, NOT_RUNNING, 'clear_to_guest', G,
          'paused or not, the guest is what it is: vm_state follows it '
          '(nova handles pausing only with the guest running and leaves '
          'this one stuck)'),
    _rule([ts.RESIZE_MIGRATING], OTHER_VM, ANY_POWER, 'revert_resize', G,
          'the resize was interrupted on the source: roll it back here '
          '(nova 34 tries to and fails on libvirt: finish_revert_migration '
          'reads instance.old_flavor, not set yet; guest left off, '
          'allocations left on the destination)'),
    _rule([ts.MIGRATING], LIVE_VM, ANY_POWER, 'reset_live_migration', N,
          'the live migration was interrupted: abort and reset it'),

    # The 17 task_states nova 34 leaves stuck (blueprint "recover from stuck
    # states").
    _rule([ts.IMAGE_BACKUP, ts.UPDATING_PASSWORD], LIVE_VM, ANY_POWER,
          'clear_to_guest', G,
          'the backup or password change was abandoned (the user asks '
          'again); vm_state follows the guest, which is not touched'),
    _rule([ts.SUSPENDING], LIVE_VM, RUNNING, 'clear_active', G,
          'the guest still runs: the suspend never reached it (the user '
          'asks again)'),
    _rule([ts.SUSPENDING], LIVE_VM, NOT_RUNNING - PAUSED, 'finish_suspend',
          G, 'the guest is saved and off: the suspend happened, only its '
             'record is missing'),
    _rule([ts.SUSPENDING], LIVE_VM, PAUSED, 'clear_to_guest', G,
          'the guest is paused, not saved: vm_state paused'),
    _rule([ts.RESUMING], [vs.SUSPENDED], RUNNING, 'clear_active', G,
          'the guest runs: the resume happened, only its record is '
          'missing'),
    _rule([ts.RESUMING], [vs.SUSPENDED], NOT_RUNNING, 'clear', G,
          'the guest is still saved: the instance stays suspended (the '
          'user resumes again)'),
    _rule([ts.RESUMING], LIVE_VM - {vs.SUSPENDED}, ANY_POWER,
          'clear_to_guest', G, STALE + '; vm_state follows the guest'),
    _rule([ts.RESCUING, ts.UNRESCUING], LIVE_VM, ANY_POWER, 'reboot_hard', G,
          'whether the rescue guest or the instance\'s own runs cannot be '
          'told from the power state: a HARD reboot rebuilds the guest from '
          'the instance\'s own disks and ends active (rescue again if '
          'needed)'),
    _rule([ts.SOFT_DELETING], LIVE_VM, ANY_POWER, 'rerun_soft_delete', G,
          'the soft delete was asked for: run it again (the guest is only '
          'powered off; restore stays possible)'),
    _rule([ts.RESTORING], LIVE_VM, ANY_POWER, 'clear_to_guest', G,
          STALE + '; vm_state follows the guest'),
    _rule(SHELVE, SHELVE_VM, ANY_POWER, 'clear_to_guest', G,
          'the shelve was abandoned before the instance was recorded '
          'shelved: it stays on this host with its disks, vm_state follows '
          'the guest (the partial snapshot image is left in the image '
          'service; the user shelves again)'),
    _rule(SHELVE, LIVE_VM - SHELVE_VM, ANY_POWER, 'clear_to_guest', G,
          STALE + '; vm_state follows the guest'),
    _rule([ts.SHELVING_OFFLOADING], [vs.SHELVED], ANY_POWER,
          'rerun_shelve_offload', G,
          'the instance is shelved and its snapshot taken; the offload was '
          'asked for: run it again'),
    _rule([ts.SHELVING_OFFLOADING], LIVE_VM - {vs.SHELVED}, ANY_POWER,
          'clear_to_guest', G, STALE + '; vm_state follows the guest'),
    _rule([ts.UNSHELVING], LIVE_VM, ANY_POWER, 'clear', G,
          'the unshelve never reached a compute that spawned the guest '
          '(spawning is a build state): the instance stays shelved, the '
          'user unshelves again'),
    _rule(RESIZE_ROLLBACK, LIVE_VM, ANY_POWER, 'rollback_resize', G,
          'a resize interrupted on its destination, or its revert: rolled '
          'back to the source by nova\'s own revert, so guest, flavor, '
          'migration and placement allocations end consistent on the '
          'source'),
    _rule([ts.RESIZE_FINISH], LIVE_VM, NO_GUEST, 'rollback_resize', G,
          'the destination died before its driver created the guest: '
          'nothing ran on the new disks, rolled back to the source by '
          'nova\'s own revert'),
    _rule([ts.RESIZE_FINISH], LIVE_VM, ANY_POWER - NO_GUEST,
          'finish_resize_forward', G,
          'the destination\'s driver created the guest, which may have '
          'run and written to its disks: a revert would roll the root disk '
          'back to the resize snapshot (rbd) or delete this copy (local '
          'disks), so the resize is finished forward instead (resized, '
          'awaiting the user\'s confirm or revert)'),
    _rule([ts.RESIZE_CONFIRMING], LIVE_VM, ANY_POWER, 'clear', G,
          'nova 34 never sets resize_confirming (the API marks the '
          'migration confirming instead): stale, cleared; a resized '
          'instance stays resized, awaiting confirm or revert'),
]

del G, N


#: Actions an operator may give a task_state in ``[guardrails]
#: recovery_overrides``: the ones that make sense for any task_state.
OVERRIDE_ACTIONS = ('clear', 'clear_to_guest', 'error', 'leave')

#: Why a hidden instance (the source cell's copy of a cross-cell resize,
#: nova's conductor/tasks/cross_cell_migrate.py) is left to nova at
#: start-up, whatever its task_state: the recovery_table guard and the audit.
HIDDEN_REASON = ('hidden: the source cell\'s copy of a cross-cell resize, '
                 'kept for its confirm or revert by nova-conductor: left to '
                 'nova\'s _init_instance, which leaves it as it is')


class TableError(Exception):
    """The recovery table is malformed (a developer error)."""


def build_index(rules, actions=None):
    """``{(task_state, vm_state, power_state): Rule}`` for ``rules``.

    :param actions: the action names a row may name (the ``recovery_table``
        guard passes its registry,
        :data:`nova_guardrails.guards.recovery_table.actions.ACTIONS`);
        None: the names are not checked here (the import check of
        :data:`RULES`, for tools that do not load the guard).
    :raises TableError: an unknown state name or action, a key matched by
        two rows, or a task_state not covered for every (vm_state, power
        state) of the installed nova.
    """
    index = {}
    for rule in rules:
        if actions is not None and rule.action not in actions:
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
                raise TableError('unknown %s %s' % (
                    what, sorted(states - known)))
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


def effective_rules(overrides):
    """:data:`RULES` with the operator's overrides applied.

    :param overrides: ``{task_state: action}`` (``[guardrails]
        recovery_overrides``); an overridden task_state takes that action,
        run by nova-guardrails, in every vm_state but the ones nova settles
        first (soft-deleted, deleted, building) and for every power state.
    :returns: a list of :class:`Rule`.
    :raises GuardrailsConfigError: an unknown task_state, or an action not
        in :data:`OVERRIDE_ACTIONS`; the message names the option.
    """
    from nova_guardrails import exception
    overrides = dict(overrides or {})
    for task_state, action in sorted(overrides.items()):
        if task_state not in ALL_TASK_STATES:
            raise exception.GuardrailsConfigError(reason=(
                '[guardrails] recovery_overrides: %r is not a task_state of '
                'the installed nova (%s)' % (
                    task_state, ', '.join(sorted(ALL_TASK_STATES)))))
        if action not in OVERRIDE_ACTIONS:
            raise exception.GuardrailsConfigError(reason=(
                '[guardrails] recovery_overrides: %s:%s: the action must be '
                'one of %s' % (task_state, action,
                               ', '.join(OVERRIDE_ACTIONS))))
    if not overrides:
        return list(RULES)
    rules = []
    for rule in RULES:
        kept = rule.task_states
        if rule.vm_states & OTHER_VM:
            kept = kept - set(overrides)
        if kept:
            rules.append(dataclasses.replace(rule, task_states=kept))
    for task_state, action in sorted(overrides.items()):
        rules.append(_rule([task_state], OTHER_VM, ANY_POWER, action,
                           BY_GUARDRAILS,
                           'operator override ([guardrails] '
                           'recovery_overrides = %s:%s)' % (task_state,
                                                            action)))
    return rules


INDEX = build_index(RULES)
COVERED_TASK_STATES = frozenset(t for t, _, _ in INDEX)


def lookup(task_state, vm_state, power_state):
    """The :class:`Rule` for a key, or ``None`` for an unlisted task_state.

    :param task_state: ``instance.task_state`` (not ``None``).
    :param vm_state: ``instance.vm_state``.
    :param power_state: power state *name* (see :class:`Rule`).
    """
    return INDEX.get((task_state, vm_state, power_state))
