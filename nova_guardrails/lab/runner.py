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
"""Run the lab: every scenario nova alone, then guarded; print the table.

By default one line per scenario within 120 columns (the upstream bug and
what happened, what nova alone and the guarded nova made of it, a verdict);
``--verbose`` prints the states and actions; ``--json`` all of it.
"""

import json
import logging
import os
import sys
import tempfile
import textwrap
import time
import unittest

import prettytable


def _run_one(scenario, nova_conf, harness, scenarios):
    results = {}

    class LabCase(harness.GuardrailsTestBase):
        NOVA_CONF = nova_conf

        def runTest(self):
            results['outcome'] = scenario.outcome(self)

    result = unittest.TestResult()
    LabCase('runTest').run(result)
    problems = result.errors + result.failures
    if problems:
        return None, problems[0][1]
    return results['outcome'], None


def _cell(outcome, error, guarded):
    if outcome is None:
        return 'lab error (see log)'
    return outcome.cell(guarded)


def main(scenarios=None, json_path=None, log_path=None, verbose=False):
    """Run the lab; returns the process exit code (0: every scenario ran).

    ``json_path`` ``'-'`` writes the JSON document to the standard output
    instead of the table.
    """
    return quietly(lambda out, log: _run(scenarios, json_path, log, out,
                                         verbose), log_path)


def quietly(body, log_path=None, prefix='nova-guardrails-lab-'):
    """``body(out, log_path)`` with nova's output sent to a log file.

    nova's fixtures and oslo.log write to the standard streams: for the run,
    file descriptors 1 and 2 and the root logger go to ``log_path`` (a new
    temporary file by default); ``out`` is the real standard output.
    """
    if log_path is None:
        fd, log_path = tempfile.mkstemp(prefix=prefix, suffix='.log')
        os.close(fd)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter(
        '%(asctime)s %(levelname)s %(name)s %(message)s'))
    root = logging.getLogger()
    root.addHandler(handler)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    for fd in saved:
        os.dup2(log_fd, fd)
    out = os.fdopen(os.dup(saved[1]), 'w')
    try:
        return body(out, log_path)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        out.close()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(log_fd)
        root.removeHandler(handler)


def _run(scenarios, json_path, log_path, out, verbose=False):
    import warnings
    warnings.simplefilter('ignore')

    from nova_guardrails.lab import harness
    from nova_guardrails.lab import scenarios as scenarios_mod

    chosen = scenarios_mod.SCENARIOS
    if scenarios:
        unknown = set(scenarios) - set(scenarios_mod.BY_NAME)
        if unknown:
            out.write('unknown scenario(s): %s; known: %s\n' % (
                ', '.join(sorted(unknown)),
                ', '.join(scenarios_mod.BY_NAME)))
            return 2
        chosen = [scenarios_mod.BY_NAME[n] for n in scenarios]

    started = time.monotonic()
    records = []
    failed = False
    for scenario in chosen:
        alone, alone_error = _run_one(scenario, harness.NOVA_ALONE_CONF,
                                      harness, scenarios_mod)
        guarded, guarded_error = _run_one(
            scenario, harness.GUARDED_NOVA_CONF, harness, scenarios_mod)
        failed = failed or alone is None or guarded is None
        crash = alone or guarded
        alone_record = _record(alone, alone_error)
        alone_record['details'] = _cell(alone, alone_error, False)
        guarded_record = _record(guarded, guarded_error)
        guarded_record['details'] = _cell(guarded, guarded_error, True)
        records.append({
            'scenario': scenario.name, 'title': scenario.title,
            'source': scenario.source,
            'label': scenario.label or '%s: %s' % (scenario.source,
                                                   scenario.title),
            'situation': crash.situation() if crash else '?',
            'nova_alone': alone_record,
            'guardrails': guarded_record,
            'verdict': compare(alone_record['verdict'],
                               guarded_record['verdict'])})
    document = {'nova_version': _nova_version(),
                'elapsed_seconds': round(time.monotonic() - started, 1),
                'log': log_path, 'scenarios': records}
    emit(document, out, json_path, verbose)
    return 1 if failed else 0


def emit(document, out, json_path=None, verbose=False):
    """Write the lab's results.

    The report to ``out`` and the JSON document to ``json_path``; with
    ``json_path`` ``'-'``, only the JSON document, to ``out``.
    """
    if json_path == '-':
        write_json(document, out)
        return
    out.write(report(document, verbose=verbose))
    if json_path:
        with open(json_path, 'w') as f:
            write_json(document, f)


#: What a restart made of the servers, best first: 0 is what the operator
#: wants (or a refusal that keeps the guests), 1 a server in ERROR with
#: nova-compute up, 2 a server left stuck or a hypervisor registered twice,
#: 3 nova-compute down or guests or data destroyed.
SEVERITY = {
    'recovered': 0, 'ok': 0, 'refused, guests intact': 0,
    'guest kept, powered off': 0, 'data intact': 0, 'reverted': 0,
    'error': 1, 'server ERROR': 1,
    'stuck': 2, 'started on a hypervisor registered twice': 2,
    'compute down': 3, 'guest destroyed': 3, 'data lost': 3,
}

#: Shorter words for the one-line table (the JSON keeps the long ones).
SHORT = {
    'started on a hypervisor registered twice': 'node registered twice',
    'refused, guests intact': 'refused, guests kept',
    'guest kept, powered off': 'kept, powered off',
}

WIDTH = 120
LEGEND = ('verdict: fixed = nova alone harms the server, guarded does not; '
          'better/WORSE = less/more harm guarded; changed = a different '
          'harm, as bad. --verbose: states and actions; --json PATH: '
          'everything.')


def compare(alone, guarded):
    """The verdict of one scenario from its two sides' verdicts."""
    if 'lab error' in (alone, guarded):
        return 'lab error'
    if 'not run' in (alone, guarded):
        return 'not run'
    a, g = SEVERITY.get(alone, 2), SEVERITY.get(guarded, 2)
    if g < a:
        return 'fixed' if g == 0 else 'better'
    if g > a:
        return 'WORSE'
    return 'same' if alone == guarded or a == 0 else 'changed'


def _fit(text, width):
    text = ' '.join(text.split())
    if len(text) <= width:
        return text
    return text[:max(width - 3, 0)].rstrip() + '...'


def _width():
    try:
        columns = int(os.environ.get('COLUMNS', ''))
    except ValueError:
        columns = WIDTH
    return min(WIDTH, columns) if columns > 0 else WIDTH


def table(records, verbose=False, width=None):
    """The lab table of ``records`` (the JSON document's scenarios).

    By default one line per scenario within ``width`` columns (120, or
    ``$COLUMNS`` when narrower); ``verbose``: today's cells, the states at
    the crash, what each restart made of them and the guards' actions.
    """
    if verbose:
        return _verbose_table(records)
    width = width or _width()
    rows = [[SHORT.get(r[side]['verdict'], r[side]['verdict'])
             for side in ('nova_alone', 'guardrails')] + [r['verdict']]
            for r in records]
    headers = ['nova alone', 'guarded', 'verdict']
    caps = [22, 22, 9]
    widths = [min(cap, max([len(h)] + [len(row[i]) for row in rows]))
              for i, (h, cap) in enumerate(zip(headers, caps))]
    # "| a | b | c | d |": 3 characters per column and one.
    label_width = max(10, width - 13 - sum(widths))
    out = prettytable.PrettyTable(['scenario'] + headers)
    out.align = 'l'
    for record, row in zip(records, rows):
        out.add_row([_fit(record['label'], label_width)] + [
            _fit(cell, w) for cell, w in zip(row, widths)])
    return out.get_string()


def _verbose_table(records):
    out = prettytable.PrettyTable(
        ['scenario', 'situation (at the crash)',
         'nova alone', 'nova-guardrails (all guards)'])
    out.align = 'l'
    out.hrules = prettytable.HRuleStyle.ALL \
        if hasattr(prettytable, 'HRuleStyle') else prettytable.ALL
    for r in records:
        out.add_row([
            '%s\n(%s)' % (r['title'], r['source']), r['situation'],
            '%s\n=> %s' % (r['nova_alone']['details'],
                           r['nova_alone']['verdict']),
            '%s\n=> %s' % (r['guardrails']['details'],
                           r['guardrails']['verdict'])])
    return out.get_string()


def report(document, verbose=False, width=None):
    """The lab's output: a header, :func:`table`, the counts."""
    width = width or _width()

    def para(text, indent=''):
        if verbose:
            return text + '\n'
        return textwrap.fill(text, width, subsequent_indent=indent) + '\n'
    records = document['scenarios']
    text = para('nova-guardrails lab: nova %s, libvirt driver over nova\'s '
                'fakelibvirt, in-process services on sqlite'
                % document['nova_version'])
    if verbose:
        text += para('Crash rows: vm_state / task_state / guest power state '
                     'on the hypervisor after one restart of nova-compute. '
                     'Host rows: what starting the service made of the '
                     'hypervisor\'s guests.')
    text += table(records, verbose, width) + '\n'
    for side, label in (('nova_alone', 'nova alone'),
                        ('guardrails', 'guardrails'), (None, 'verdicts')):
        counts = {}
        for record in records:
            verdict = record[side]['verdict'] if side else record['verdict']
            counts[verdict] = counts.get(verdict, 0) + 1
        text += para('%-11s %s' % (label + ':', '; '.join(
            '%d %s' % (n, v) for v, n in sorted(counts.items()))),
            indent=' ' * 12)
    if not verbose:
        text += para(LEGEND)
    text += para('%d scenarios x 2 in %.1f s; nova\'s log: %s' % (
        len(records), document['elapsed_seconds'], document['log']))
    return text


def write_json(document, f):
    json.dump(document, f, indent=2)
    f.write('\n')


def _record(outcome, error):
    if outcome is None:
        return {'verdict': 'lab error', 'error': error}
    return outcome.as_dict()


def _nova_version():
    import importlib.metadata
    return importlib.metadata.version('nova')
