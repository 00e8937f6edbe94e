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
"""The recovery table rendered for people (``nova-guardrails table``).

The rows come from :mod:`nova_guardrails.recovery`, the actions' text from
the ``recovery_table`` guard's registry
(:data:`nova_guardrails.guards.recovery_table.actions.ACTIONS`).
"""

from nova_guardrails.guards.recovery_table import actions
from nova_guardrails import recovery


def _states(states, universe):
    """``'any'``, the names, or ``'any but ...'`` when that is shorter."""
    if states == universe:
        return 'any'
    rest = universe - states
    if len(rest) < len(states):
        return 'any but ' + ', '.join(sorted(rest))
    return ', '.join(sorted(states))


def rows(rules=None):
    """Table rows as tuples: (task_states, vm_states, power states, action,
    by, reason), in the table's order.

    :param rules: the rules to render (default :data:`recovery.RULES`; the
        ``table`` command passes the effective rules, overrides applied).
    """
    out = []
    for rule in recovery.RULES if rules is None else rules:
        out.append((
            _states(rule.task_states, recovery.ALL_TASK_STATES)
            if len(rule.task_states) > 20 else
            ', '.join(sorted(rule.task_states)),
            _states(rule.vm_states, recovery.ALL_VM_STATES),
            _states(rule.power_states, recovery.ALL_POWER_STATES),
            rule.action, rule.by, rule.reason))
    return out


def _uncovered(rules):
    return sorted(recovery.ALL_TASK_STATES - {
        t for rule in (recovery.RULES if rules is None else rules)
        for t in rule.task_states})


def markdown(rules=None):
    """The recovery table and its action vocabulary as markdown."""
    lines = ['| task_state | vm_state | power state | action | by | reason |',
             '|---|---|---|---|---|---|']
    for row in rows(rules):
        lines.append('| %s |' % ' | '.join(row))
    lines += ['', '| action | what it does |', '|---|---|']
    for name, action in sorted(actions.ACTIONS.items()):
        lines.append('| %s | %s |' % (name, action.description))
    uncovered = _uncovered(rules)
    lines += ['', 'Every task_state of the installed nova (%d) is covered.'
              % len(recovery.ALL_TASK_STATES) if not uncovered else
              'Not covered (left to nova): %s.' % ', '.join(uncovered), '']
    return '\n'.join(lines)


def rst():
    """The recovery table as reStructuredText (the documentation's page)."""
    def cell(text):
        return text.replace('|', '\\|')
    lines = ['.. list-table::', '   :header-rows: 1',
             '   :widths: 20 15 10 10 8 37', '',
             '   * - task_state', '     - vm_state', '     - power state',
             '     - action', '     - by', '     - reason']
    for row in rows():
        lines.append('   * - %s' % cell(row[0]))
        lines.extend('     - %s' % cell(value) for value in row[1:])
    lines += ['', '.. list-table:: Actions', '   :header-rows: 1', '',
              '   * - action', '     - what it does']
    for name, action in sorted(actions.ACTIONS.items()):
        lines += ['   * - ``%s``' % name,
                  '     - %s' % cell(action.description)]
    uncovered = _uncovered(None)
    lines += ['', 'Every task_state of the installed nova (%d) is covered.'
              % len(recovery.ALL_TASK_STATES) if not uncovered else
              'Not covered (left to nova): %s.' % ', '.join(uncovered), '']
    return '\n'.join(lines)
