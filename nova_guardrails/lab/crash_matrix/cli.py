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
"""The ``nova-guardrails crash-matrix`` command (``make crash-matrix``).

:func:`main` runs the matrix in this process (nova's output to a log file,
:func:`nova_guardrails.lab.runner.quietly`) or, with ``jobs`` > 1, in
worker processes of the same command, each running whole operations with
its own in-process nova (:func:`_parallel`), then merges their JSON
results in :data:`~nova_guardrails.lab.crash_matrix.operations.BY_NAME`
order. It writes the markdown report and the JSON document
(:mod:`nova_guardrails.lab.crash_matrix.report`) and prints the summary.
"""

import json
import time

from nova_guardrails.lab.crash_matrix import cells
from nova_guardrails.lab.crash_matrix import invariants
from nova_guardrails.lab.crash_matrix import operations as lifecycle
from nova_guardrails.lab.crash_matrix import report


def _parallel(operations, guards, jobs, quiet, log_path):
    """Run the operations in ``jobs`` subprocesses of ``nova-guardrails
    crash-matrix`` (one process per group of operations, each with its own
    in-process nova) and merge their JSON results.
    """
    import os
    import subprocess
    import sys
    import tempfile
    names = list(operations or lifecycle.BY_NAME)
    groups = [names[i::jobs] for i in range(jobs)]
    tmp = tempfile.mkdtemp(prefix='nova-guardrails-matrix-')
    procs = []
    for i, group in enumerate(g for g in groups if g):
        part = os.path.join(tmp, 'part-%d' % i)
        cmd = [sys.executable, '-m', 'nova_guardrails.cmd.cli',
               'crash-matrix', '--guards', guards, '--ops'] + group + [
            '--output', part + '.md', '--json', part + '.json',
            '--log-file', '%s.%d' % (log_path, i) if log_path else
            part + '.log']
        if quiet:
            cmd.append('--quiet')
        procs.append((part, subprocess.Popen(
            cmd, stdout=None if not quiet else subprocess.DEVNULL)))
    result = {'points': {}, 'cells': [], 'trace_errors': {}}
    for part, proc in procs:
        proc.wait()
        try:
            with open(part + '.json') as f:
                data = json.load(f)
        except OSError:
            result['trace_errors'][os.path.basename(part)] = (
                'worker exited %s without a result' % proc.returncode)
            continue
        result['points'].update(data['points'])
        result['trace_errors'].update(data['trace_errors'])
        result['cells'].extend(cells.Cell(**c) for c in data['cells'])
    order = {name: i for i, name in enumerate(lifecycle.BY_NAME)}
    result['cells'].sort(key=lambda c: (order.get(c.operation, 99),))
    return result, tmp


def main(operations=None, guards='both', output='crash-matrix.md',
         json_path='crash-matrix.json', log_path=None, quiet=False,
         jobs=1):
    """The ``crash-matrix`` command; returns the exit code (0: every cell
    ran; the verdicts are the report, not the exit code).

    :param operations: operation names (default: every operation).
    :param guards: ``'on'``, ``'off'`` or ``'both'``.
    :param output: the markdown report's path.
    :param json_path: the JSON document's path.
    :param log_path: nova's log (default: a new temporary file; with
        ``jobs`` > 1, one file per worker, ``<log_path>.<n>``).
    :param quiet: no progress line per cell.
    :param jobs: worker processes (each runs whole operations).
    """
    from nova_guardrails.lab import runner
    import sys
    started = time.monotonic()
    holder = {}

    def progress(line):
        if not quiet:
            holder['out'].write(line + '\n')
            holder['out'].flush()

    def body(out, log):
        holder['out'] = out
        holder['log'] = log
        return cells.run(operations, guards, progress)
    if jobs > 1:
        result, holder['log'] = _parallel(operations, guards, jobs, quiet,
                                          log_path)
    else:
        result = runner.quietly(body, log_path,
                                prefix='nova-guardrails-matrix-')
    seconds = time.monotonic() - started
    document = report.markdown(result, seconds)
    with open(output, 'w') as f:
        f.write(document)
    with open(json_path, 'w') as f:
        report.write_json(result, f)
    sys.stdout.write(document.split('\n| operation |')[0] + '\n')
    sys.stdout.write('wrote %s and %s; nova\'s log: %s\n' % (
        output, json_path, holder['log']))
    errors = [c for c in result['cells']
              if c.verdict not in
              invariants.VERDICTS + (invariants.NOT_REACHED,)]
    return 1 if errors or result['trace_errors'] else 0
