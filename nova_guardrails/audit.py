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
"""``nova-guardrails audit``: what the recovery table would do now.

Read-only. For every instance of a host that has a task_state, it reads the
instance from the cell database (``InstanceList.get_by_filters``: this
host's instances with a task_state, hidden ones in a second query; then the
latest instance actions of those instances in two more queries) and, when
run on the compute host, the guest's power state from libvirt (a read-only
connection), and prints the action the ``recovery_table`` guard would take
at start-up: the effective table (``[guardrails] recovery_overrides``
applied), or ``queued`` for a request no compute has started yet
(:mod:`nova_guardrails.queued`). It never writes to the database or the
hypervisor.
"""

import json

import prettytable

from nova_guardrails import recovery
from nova_guardrails import report as report_mod

COLUMNS = ('instance', 'vm_state', 'task_state', 'power_state', 'action',
           'by', 'reason')


def decide(instance, power_name, index=None):
    """``(action, by, reason)`` for an instance and a power state name, or
    for an unknown power state (``None``) when every power state leads to
    the same action.

    :param index: the effective table (:func:`recovery.build_index`);
        default the shipped table.
    """
    index = recovery.INDEX if index is None else index

    def lookup(task_state, vm_state, power):
        return index.get((task_state, vm_state, power))
    if power_name is None:
        rules = {lookup(instance.task_state, instance.vm_state, p)
                 for p in recovery.ALL_POWER_STATES}
        if None in rules:
            return 'unlisted', 'nova', 'task_state not in this release\'s ' \
                'recovery table'
        if len(rules) > 1:
            return ('depends on the power state', '-',
                    'run on the compute host to read it: %s' % ', '.join(
                        sorted({r.action for r in rules})))
        [rule] = rules
    else:
        rule = lookup(instance.task_state, instance.vm_state, power_name)
        if rule is None:
            return 'unlisted', 'nova', 'task_state not in this release\'s ' \
                'recovery table'
    return rule.action, rule.by, rule.reason


def rows(context, host, power_of=None, index=None, grace=None):
    """One row (a dict of :data:`COLUMNS`) per instance of ``host`` with a
    task_state.

    :param power_of: ``f(instance) -> power state int or None`` (None or
        raising: unknown).
    :param index: the effective table (default: the shipped one).
    :param grace: ``[guardrails] queued_grace_seconds``; when set (not 0 or
        None), a request no compute started is reported ``queued``.
    """
    from nova import objects
    from nova_guardrails import queued
    out = []
    from nova.objects import fields
    # Only the instances with a task_state leave the database (an IN list
    # of every task_state nova knows): the audit of a host reads what it
    # reports, not the whole host. The same instances as get_by_host, which
    # nova-compute's init_host reads: not deleted (get_by_filters ignores
    # the context's read_deleted), soft-deleted ones included ('deleted':
    # False alone drops them), and hidden ones too (the source copy of a
    # cross-cell resize; get_by_filters drops them unless asked for them
    # alone: a second query).
    instances = []
    for hidden in (False, True):
        instances.extend(objects.InstanceList.get_by_filters(
            context, {'host': host, 'deleted': False, 'soft_deleted': True,
                      'hidden': hidden,
                      'task_state': list(fields.InstanceTaskState.ALL)},
            sort_key='created_at', sort_dir='asc', expected_attrs=[]))
    latest = queued.latest_actions(context, [i.uuid for i in instances]) \
        if grace else {}
    for instance in instances:
        power = None
        if power_of is not None:
            try:
                power = power_of(instance)
            except Exception:
                power = None
        name = report_mod.power_state_name(power)
        action, by, reason = decide(instance, name, index)
        if instance.hidden:
            # As the recovery_table guard (RecoveryTableGuard._decide).
            action, by, reason = 'nova', 'nova', recovery.HIDDEN_REASON
        elif grace:
            verdict, why = queued.classify(instance.task_state,
                                           latest.get(instance.uuid), host)
            if verdict == queued.QUEUED:
                action, by, reason = 'queued', 'guardrails', (
                    '%s: left alone at start-up, then %s after %ss if '
                    'nothing moved' % (why, action, grace))
        out.append(dict(zip(COLUMNS, (
            instance.uuid, instance.vm_state, instance.task_state,
            name or 'unknown', action, by, reason))))
    return out


def render(table_rows, fmt):
    """``table_rows`` as a text table or JSON."""
    if fmt == 'json':
        return json.dumps(table_rows, indent=2)
    table = prettytable.PrettyTable(list(COLUMNS))
    table.align = 'l'
    for row in table_rows:
        table.add_row([row[c] for c in COLUMNS])
    return table.get_string()


def _libvirt_power_of(conf):
    """A read-only libvirt reader of power states, or None."""
    driver = conf.guardrails.driver if conf.compute_driver.startswith(
        'guardrails.') else conf.compute_driver
    if not driver or not driver.startswith('libvirt.'):
        return None
    from nova.virt.libvirt import driver as libvirt_driver
    from nova.virt.libvirt import host as libvirt_host
    uri = libvirt_driver.LibvirtDriver._uri()
    host = libvirt_host.Host(uri, read_only=True)

    def power_of(instance):
        return host.get_guest(instance).get_power_state(host)
    return power_of


def main(args):
    import nova.conf
    from nova import config
    from nova import context as nova_context
    from nova import objects
    from nova_guardrails import guards
    conf = nova.conf.CONF
    # nova-guardrails' own options and recovery_table's.
    guards.register_opts(conf, ['recovery_table'])
    argv = ['nova-guardrails']
    for path in args.config_file or ['/etc/nova/nova.conf']:
        argv += ['--config-file', path]
    config.parse_args(argv, init_rpc=False)
    objects.register_all()
    power_of = None if args.no_hypervisor else _libvirt_power_of(conf)
    host = args.host or conf.host
    index = recovery.build_index(recovery.effective_rules(
        conf.guardrails.recovery_overrides))
    print(render(rows(nova_context.get_admin_context(), host, power_of,
                      index, conf.guardrails.queued_grace_seconds),
                 args.format))
    return 0
