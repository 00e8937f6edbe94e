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
"""``nova-guardrails``: the operator's command.

Subcommands:

* ``lab``: run the upstream bugs' scenarios on an embedded in-process nova,
  nova alone beside guarded, and print the comparison table, one line per
  scenario (``--verbose``: the details; needs the ``lab`` extra).
* ``table``: print the recovery table as markdown.
* ``rbd-trash list|restore UUID``: root disks in the rbd trash.
* ``audit``: read-only, what the recovery table would do now.
* ``crash-matrix``: every lifecycle operation crashed at every step, nova
  alone beside guarded (needs the ``lab`` extra).
* ``bench``: nova-compute start-up time and round trips, nova alone beside
  guarded (needs the ``lab`` extra).
"""

import argparse
import sys


def _lab(args):
    from nova_guardrails.lab import runner
    return runner.main(scenarios=args.scenario, json_path=args.json,
                       log_path=args.log_file, verbose=args.verbose)


def _crash_matrix(args):
    from nova_guardrails.lab import crash_matrix
    if args.ops:
        unknown = set(args.ops) - set(crash_matrix.BY_NAME)
        if unknown:
            sys.stderr.write('nova-guardrails crash-matrix: unknown '
                             'operation(s) %s; known: %s\n' % (
                                 ', '.join(sorted(unknown)),
                                 ', '.join(crash_matrix.BY_NAME)))
            return 2
    ops = crash_matrix.FAST_SUBSET if args.fast else args.ops
    return crash_matrix.main(operations=ops, guards=args.guards,
                             output=args.output, json_path=args.json,
                             log_path=args.log_file, quiet=args.quiet,
                             jobs=args.jobs)


def _bench(args):
    from nova_guardrails import bench
    return bench.main(args)


def _table(args):
    from nova_guardrails import recovery
    from nova_guardrails import table_doc
    rules = None
    if args.config_file:
        import nova.conf
        from nova_guardrails import exception
        from nova_guardrails import guards
        from oslo_config import cfg
        conf = nova.conf.CONF
        # nova-guardrails' own options and recovery_table's.
        guards.register_opts(conf, ['recovery_table'])
        conf(['--config-file=%s' % path for path in args.config_file],
             project='nova', default_config_files=[])
        try:
            rules = recovery.effective_rules(
                conf.guardrails.recovery_overrides)
        except (cfg.ConfigFileValueError, ValueError,
                exception.GuardrailsConfigError) as error:
            sys.stderr.write('nova-guardrails table: %s\n' % error)
            return 2
    sys.stdout.write(table_doc.markdown(rules))
    return 0


def _audit(args):
    from nova_guardrails import audit
    return audit.main(args)


def _rbd_trash(args):
    from nova_guardrails import rbd_trash
    return rbd_trash.main(args)


def build_parser():
    parser = argparse.ArgumentParser(
        prog='nova-guardrails',
        description='Guards for nova-compute: start-up recovery and '
                    'data-safety checks.')
    sub = parser.add_subparsers(dest='command', required=True)
    lab = sub.add_parser(
        'lab', help='run the upstream bugs\' scenarios on an embedded nova, '
                    'nova alone beside guarded, and print one line per '
                    'scenario (within 120 columns)')
    lab.add_argument('--scenario', action='append', metavar='NAME',
                     help='run only this scenario (repeatable)')
    lab.add_argument('--json', metavar='PATH',
                     help='also write the results as JSON to PATH; "-": '
                          'only the JSON, to the standard output')
    lab.add_argument('--verbose', '-v', action='store_true',
                     help='the details: the states at the crash, what each '
                          'restart made of them, the guards\' actions')
    lab.add_argument('--log-file', metavar='PATH',
                     help='nova\'s log of the lab run (default: a file in '
                          'the temporary directory, named at the end)')
    lab.set_defaults(func=_lab)
    matrix = sub.add_parser(
        'crash-matrix',
        help='every lifecycle operation crashed at every step on an '
             'embedded nova, nova alone and guarded; writes crash-matrix.md '
             'and a JSON file (needs the lab extra)')
    matrix.add_argument('--ops', nargs='+', metavar='OP',
                        help='operations to run (default: all)')
    matrix.add_argument('--fast', action='store_true',
                        help='only the subset every CI run executes')
    matrix.add_argument('--guards', choices=['on', 'off', 'both'],
                        default='both',
                        help='nova-guardrails on, off (nova alone) or both '
                             '(default)')
    matrix.add_argument('--output', default='crash-matrix.md',
                        metavar='PATH', help='markdown report')
    matrix.add_argument('--json', default='crash-matrix.json',
                        metavar='PATH', help='JSON report')
    matrix.add_argument('--log-file', metavar='PATH',
                        help='nova\'s log of the run')
    matrix.add_argument('--jobs', type=int, default=1, metavar='N',
                        help='worker processes, each running whole '
                             'operations (default 1)')
    matrix.add_argument('--quiet', action='store_true',
                        help='no line per cell while it runs')
    matrix.set_defaults(func=_crash_matrix)
    from nova_guardrails import bench
    bench.build_parser(sub.add_parser(
        'bench', help='nova-compute start-up (init_host) time and round '
                      'trips at 10 to 1,000 instances, nova alone beside '
                      'guarded (needs the lab extra)')).set_defaults(
                          func=_bench)
    table = sub.add_parser('table', help='print the recovery table '
                                         '(markdown); with --config-file, '
                                         'the effective one, [guardrails] '
                                         'recovery_overrides applied')
    table.add_argument('--config-file', action='append', metavar='PATH',
                       help='nova configuration file whose [guardrails] '
                            'recovery_overrides apply (repeatable)')
    table.set_defaults(func=_table)
    audit = sub.add_parser(
        'audit', help='read-only: per instance of a host, the state and the '
                      'action the recovery table would take at start-up now')
    audit.add_argument('--config-file', action='append', metavar='PATH',
                       help='nova configuration file with [database] '
                            'connection (repeatable; default '
                            '/etc/nova/nova.conf)')
    audit.add_argument('--host', help='the nova-compute host (default: '
                                      '[DEFAULT] host)')
    audit.add_argument('--format', choices=['table', 'json'],
                       default='table')
    audit.add_argument('--no-hypervisor', action='store_true',
                       help='do not read power states from libvirt (when '
                            'not run on the compute host)')
    audit.set_defaults(func=_audit)
    trash = sub.add_parser(
        'rbd-trash', help='list or restore root disks that nova-guardrails '
                          'moved to the rbd trash ([guardrails] '
                          'rbd_trash_delay); Ceph settings from nova.conf\'s '
                          '[libvirt]')
    trash.add_argument('--config-file', action='append', metavar='PATH',
                       help='nova configuration file (repeatable; default '
                            '/etc/nova/nova.conf)')
    trash_sub = trash.add_subparsers(dest='trash_command', required=True)
    trash_sub.add_parser('list', help='root disks in the pool\'s rbd trash')
    restore = trash_sub.add_parser(
        'restore', help='restore an instance\'s root disk under its name')
    restore.add_argument('instance_uuid')
    trash.set_defaults(func=_rbd_trash)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
