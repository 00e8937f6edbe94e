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
"""The recovery table: complete, unambiguous, what nova bug 1072751 asks."""

import dataclasses
import unittest
from unittest import mock

from nova.compute import task_states
from oslo_config import cfg

from nova_guardrails import guards
from nova_guardrails.guards import recovery_table
from nova_guardrails.guards.recovery_table import actions
from nova_guardrails import recovery

REBOOT_STATES = set(task_states.soft_reboot_states +
                    task_states.hard_reboot_states)

#: The 17 task_states nova 34's _init_instance leaves stuck.
NOT_HANDLED_BY_NOVA_34 = {
    'image_backup', 'updating_password', 'resize_migrated', 'resize_finish',
    'resize_reverting', 'resize_confirming', 'suspending', 'resuming',
    'rescuing', 'unrescuing', 'soft-deleting', 'restoring', 'shelving',
    'shelving_image_pending_upload', 'shelving_image_uploading',
    'shelving_offloading', 'unshelving'}


def installed_task_states():
    """Every task_state constant of nova.compute.task_states, read from the
    installed module (not from the table's own source of names).
    """
    return {value for name, value in vars(task_states).items()
            if name.isupper() and isinstance(value, str)}


class TableTest(unittest.TestCase):

    def test_every_task_state_of_the_installed_nova_is_covered(self):
        missing = installed_task_states() - recovery.COVERED_TASK_STATES
        self.assertEqual(set(), missing,
                         'task_states of the installed nova that the '
                         'recovery table lacks: %s' % sorted(missing))
        self.assertEqual(42, len(recovery.COVERED_TASK_STATES))

    def test_every_key_is_decided(self):
        # Every (task_state, vm_state, power state) of the installed nova.
        self.assertEqual(len(recovery.ALL_TASK_STATES) *
                         len(recovery.ALL_VM_STATES) *
                         len(recovery.ALL_POWER_STATES),
                         len(recovery.INDEX))

    def test_states_nova_leaves_stuck_are_decided_by_guardrails(self):
        self.assertEqual(NOT_HANDLED_BY_NOVA_34,
                         set(recovery.NOT_HANDLED_BY_NOVA))
        for task_state in NOT_HANDLED_BY_NOVA_34:
            for vm_state in recovery.OTHER_VM:
                for power in recovery.ALL_POWER_STATES:
                    rule = recovery.lookup(task_state, vm_state, power)
                    self.assertEqual('guardrails', rule.by,
                                     (task_state, vm_state, power))
                    self.assertNotIn(rule.action, ('leave', 'skip'))

    def test_no_row_leaves_an_instance_stuck(self):
        for rule in recovery.RULES:
            self.assertNotIn(rule.action, ('leave', 'skip'), rule)

    def test_every_action_is_registered(self):
        for rule in recovery.RULES:
            self.assertIn(rule.action, actions.ACTIONS, rule)
        for name in recovery.OVERRIDE_ACTIONS:
            self.assertIsNotNone(actions.ACTIONS[name].run, name)
        for name, action in actions.ACTIONS.items():
            self.assertEqual(name, action.name)
            self.assertTrue(action.description, name)

    def test_every_guardrails_action_has_an_executor(self):
        for rule in recovery.RULES:
            if rule.by == 'guardrails':
                self.assertIsNotNone(actions.ACTIONS[rule.action].run, rule)

    def test_validate_checks_the_table_after_overrides(self):
        """An action an override brings in must be runnable: a start-up
        that could not run it stops instead of failing every instance.
        """
        conf = cfg.ConfigOpts()
        guards.register_opts(conf, ['recovery_table'])
        conf([])
        # 'leave' is in no row of the shipped table: only the override
        # brings it in.
        conf.set_override('recovery_overrides', {'rebooting': 'leave'},
                          group='guardrails')
        guard = recovery_table.RecoveryTableGuard(conf, None)
        guard.validate()
        self.assertEqual('leave', guard.index[
            ('rebooting', 'active', 'running')].action)
        broken = dict(actions.ACTIONS, leave=dataclasses.replace(
            actions.ACTIONS['leave'], run=None))
        with mock.patch.object(actions, 'ACTIONS', broken), \
                self.assertRaises(recovery.TableError) as raised:
            guard.validate()
        self.assertIn("['leave']", str(raised.exception))

    def test_reboot_states_are_decided_by_guardrails(self):
        for task_state in REBOOT_STATES:
            for vm_state in recovery.OTHER_VM:
                for power in recovery.ALL_POWER_STATES:
                    rule = recovery.lookup(task_state, vm_state, power)
                    self.assertEqual('guardrails', rule.by,
                                     (task_state, vm_state, power))
                    self.assertIsNotNone(actions.ACTIONS[rule.action].run)

    def test_bug_1072751(self):
        # Soft reboot interrupted after the guest was shut down: HARD.
        for task_state in task_states.soft_reboot_states:
            for power in ('shutdown', 'pending', 'crashed'):
                self.assertEqual(
                    'reboot_hard',
                    recovery.lookup(task_state, 'active', power).action)
        # Guest still running: no second reboot, except an acknowledged
        # request that never reached the driver.
        self.assertEqual('clear_active', recovery.lookup(
            'reboot_started', 'active', 'running').action)
        self.assertEqual('clear_active', recovery.lookup(
            'rebooting', 'active', 'running').action)
        self.assertEqual('reboot_soft', recovery.lookup(
            'reboot_pending', 'active', 'running').action)
        for task_state in task_states.hard_reboot_states:
            self.assertEqual('reboot_hard', recovery.lookup(
                task_state, 'active', 'shutdown').action)
            self.assertEqual('reboot_hard', recovery.lookup(
                task_state, 'error', 'shutdown').action)

    def test_some_new_rows(self):
        for key, action in (
                (('suspending', 'active', 'running'), 'clear_active'),
                (('suspending', 'active', 'shutdown'), 'finish_suspend'),
                (('resuming', 'suspended', 'shutdown'), 'clear'),
                (('resize_reverting', 'resized', 'running'),
                 'rollback_resize'),
                (('resize_migrated', 'active', 'shutdown'),
                 'rollback_resize'),
                (('shelving_offloading', 'shelved', 'shutdown'),
                 'rerun_shelve_offload'),
                (('restoring', 'soft-delete', 'shutdown'),
                 'rerun_restore'),
                (('rescuing', 'active', 'running'), 'reboot_hard'),
                (('pausing', 'active', 'paused'), 'clear_to_guest'),
                (('image_snapshot', 'error', 'running'), 'clear')):
            self.assertEqual(action, recovery.lookup(*key).action, key)

    def test_every_row_has_a_reason(self):
        for rule in recovery.RULES:
            self.assertGreater(len(rule.reason), 20, rule)


class OverridesTest(unittest.TestCase):

    def test_override_replaces_the_task_state_rows(self):
        rules = recovery.effective_rules({'resize_reverting': 'error'})
        index = recovery.build_index(rules)
        for vm_state in recovery.OTHER_VM:
            for power in recovery.ALL_POWER_STATES:
                rule = index[('resize_reverting', vm_state, power)]
                self.assertEqual(('error', 'guardrails'),
                                 (rule.action, rule.by))
                self.assertIn('recovery_overrides', rule.reason)
        # nova still settles a deleted instance first.
        self.assertEqual('complete_deletion', index[
            ('resize_reverting', 'deleted', 'running')].action)
        # Other task_states keep their rows.
        self.assertEqual(recovery.lookup('suspending', 'active', 'running'),
                         index[('suspending', 'active', 'running')])

    def test_no_override_is_the_table(self):
        self.assertEqual(recovery.RULES, recovery.effective_rules({}))

    def test_bad_overrides_name_the_option(self):
        from nova_guardrails import exception
        for overrides, text in (({'nap': 'error'}, "'nap' is not a "
                                 "task_state"),
                                ({'shelving': 'reboot_hard'},
                                 'shelving:reboot_hard: the action must '
                                 'be one of')):
            with self.assertRaisesRegex(exception.GuardrailsConfigError,
                                        r'\[guardrails\] recovery_overrides'
                                        r'.*' + text):
                recovery.effective_rules(overrides)


class TableValidationTest(unittest.TestCase):
    """build_index rejects a malformed table (so the import check bites)."""

    def rule(self, **kw):
        values = dict(task_states=frozenset(['pausing']),
                      vm_states=recovery.ALL_VM_STATES,
                      power_states=recovery.ALL_POWER_STATES,
                      action='leave', by='nova', reason='r')
        values.update(kw)
        return recovery.Rule(**values)

    def test_complete_single_rule(self):
        self.assertEqual(72, len(recovery.build_index([self.rule()])))

    def test_overlap(self):
        self.assertRaisesRegex(
            recovery.TableError, 'matches two rows', recovery.build_index,
            [self.rule(), self.rule(vm_states=frozenset(['active']))])

    def test_gap(self):
        self.assertRaisesRegex(
            recovery.TableError, 'pausing is not covered for vm_state '
            'active', recovery.build_index,
            [self.rule(vm_states=recovery.ALL_VM_STATES - {'active'})])

    def test_unknown_names(self):
        for kw, text in ((dict(action='explode'), 'unknown action'),
                         (dict(by='someone'), 'unknown executor'),
                         (dict(task_states=frozenset(['nap'])),
                          'unknown task_state'),
                         (dict(vm_states=frozenset(['zombie'])),
                          'unknown vm_state'),
                         (dict(power_states=frozenset()), 'no power')):
            self.assertRaisesRegex(recovery.TableError, text,
                                   recovery.build_index, [self.rule(**kw)],
                                   actions.ACTIONS)


HEADER = ('# The recovery table\n\nGenerated by `nova-guardrails table` (a '
          'unit test fails when this file is out of date).\n\n')


class DocumentedTableTest(unittest.TestCase):

    def test_doc_is_current(self):
        from nova_guardrails import table_doc
        import os
        path = os.path.join(os.path.dirname(__file__), '..', '..', 'doc',
                            'recovery-table.md')
        with open(path) as f:
            committed = f.read()
        self.assertEqual(
            HEADER + table_doc.markdown(), committed,
            'doc/recovery-table.md is out of date: regenerate it with '
            '`nova-guardrails table`')
