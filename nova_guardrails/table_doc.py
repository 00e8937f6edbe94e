"""The recovery table rendered for people (``nova-guardrails table``)."""

from nova_guardrails import recovery


def _states(states, universe):
    """``'any'``, the names, or ``'any but ...'`` when that is shorter."""
    if states == universe:
        return 'any'
    rest = universe - states
    if len(rest) < len(states):
        return 'any but ' + ', '.join(sorted(rest))
    return ', '.join(sorted(states))


def rows():
    """Table rows as tuples: (task_states, vm_states, power states, action,
    by, reason), sorted by task_state."""
    out = []
    for rule in recovery.RULES:
        out.append((
            ', '.join(sorted(rule.task_states))
            if rule.task_states != recovery.COVERED else
            'every covered task_state',
            _states(rule.vm_states, recovery.ALL_VM_STATES),
            _states(rule.power_states, recovery.ALL_POWER_STATES),
            rule.action, rule.by, rule.reason))
    return out


def markdown():
    """The recovery table and its action vocabulary as markdown."""
    lines = ['| task_state | vm_state | power state | action | by | reason |',
             '|---|---|---|---|---|---|']
    for row in rows():
        lines.append('| %s |' % ' | '.join(row))
    lines += ['', '| action | what it does |', '|---|---|']
    for action, text in sorted(recovery.ACTIONS.items()):
        lines.append('| %s | %s |' % (action, text))
    uncovered = sorted(recovery.ALL_TASK_STATES -
                       recovery.COVERED_TASK_STATES)
    lines += ['', 'Not in this release\'s table (reported as `unlisted`, '
              'left to nova): %s.' % ', '.join(uncovered), '']
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
    for action, text in sorted(recovery.ACTIONS.items()):
        lines += ['   * - ``%s``' % action, '     - %s' % cell(text)]
    uncovered = sorted(recovery.ALL_TASK_STATES -
                       recovery.COVERED_TASK_STATES)
    lines += ['', 'Not in this release\'s table (reported as ``unlisted``, '
              'left to nova): %s.' % ', '.join(uncovered), '']
    return '\n'.join(lines)
