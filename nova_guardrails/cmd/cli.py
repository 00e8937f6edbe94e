"""``nova-guardrails``: the operator's command.

Subcommands:

* ``lab``: run the seed scenarios on an embedded in-process nova, nova alone
  beside guarded, and print the comparison table (needs the ``lab`` extra).
* ``table``: print the recovery table as markdown.
"""

import argparse
import sys


def _lab(args):
    from nova_guardrails.lab import runner
    return runner.main(scenarios=args.scenario, json_path=args.json,
                       log_path=args.log_file)


def _table(args):
    from nova_guardrails import table_doc
    sys.stdout.write(table_doc.markdown())
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog='nova-guardrails',
        description='Guards for nova-compute: start-up recovery and '
                    'data-safety checks.')
    sub = parser.add_subparsers(dest='command', required=True)
    lab = sub.add_parser(
        'lab', help='run the seed scenarios on an embedded nova, nova alone '
                    'beside guarded, and print the table')
    lab.add_argument('--scenario', action='append', metavar='NAME',
                     help='run only this scenario (repeatable)')
    lab.add_argument('--json', metavar='PATH',
                     help='also write the results as JSON to PATH')
    lab.add_argument('--log-file', metavar='PATH',
                     help='nova\'s log of the lab run (default: a file in '
                          'the temporary directory, named at the end)')
    lab.set_defaults(func=_lab)
    table = sub.add_parser('table', help='print the recovery table '
                                         '(markdown)')
    table.set_defaults(func=_table)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
