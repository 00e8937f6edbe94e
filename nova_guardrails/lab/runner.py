"""Run the lab: every scenario nova alone, then guarded; print the table."""

import json
import logging
import os
import sys
import tempfile
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


def _verdict(outcome):
    return 'lab error' if outcome is None else outcome.verdict


def main(scenarios=None, json_path=None, log_path=None):
    """Run the lab; returns the process exit code (0: every scenario ran)."""
    return quietly(lambda out, log: _run(scenarios, json_path, log, out),
                   log_path)


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


def _run(scenarios, json_path, log_path, out):
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
    table = prettytable.PrettyTable(
        ['scenario', 'situation (at the crash)',
         'nova alone', 'nova-guardrails (all guards)'])
    table.align = 'l'
    table.hrules = prettytable.HRuleStyle.ALL \
        if hasattr(prettytable, 'HRuleStyle') else prettytable.ALL
    records = []
    failed = False
    for scenario in chosen:
        alone, alone_error = _run_one(scenario, harness.NOVA_ALONE_CONF,
                                      harness, scenarios_mod)
        guarded, guarded_error = _run_one(
            scenario, harness.GUARDED_NOVA_CONF, harness, scenarios_mod)
        failed = failed or alone is None or guarded is None
        crash = alone or guarded
        at_crash = crash.situation() if crash else '?'

        table.add_row([
            '%s\n(%s)' % (scenario.title, scenario.source), at_crash,
            '%s\n=> %s' % (_cell(alone, alone_error, False),
                           _verdict(alone)),
            '%s\n=> %s' % (_cell(guarded, guarded_error, True),
                           _verdict(guarded))])
        records.append({
            'scenario': scenario.name, 'title': scenario.title,
            'source': scenario.source,
            'nova_alone': _record(alone, alone_error),
            'guardrails': _record(guarded, guarded_error)})
    elapsed = time.monotonic() - started

    print('nova-guardrails lab: nova %s, libvirt driver over nova\'s '
          'fakelibvirt, in-process services on sqlite' % _nova_version(),
          file=out)
    print('Crash rows: vm_state / task_state / guest power state on the '
          'hypervisor after one restart of nova-compute. Host rows: what '
          'starting the service made of the hypervisor\'s guests.',
          file=out)
    print(table.get_string(), file=out)
    counts = {}
    for record in records:
        for side in ('nova_alone', 'guardrails'):
            verdict = record[side]['verdict']
            counts.setdefault(side, {}).setdefault(verdict, 0)
            counts[side][verdict] += 1
    for side, label in (('nova_alone', 'nova alone'),
                        ('guardrails', 'guardrails')):
        print('%-11s %s' % (label + ':', ', '.join(
            '%d %s' % (n, v) for v, n in sorted(counts.get(side, {})
                                                .items()))), file=out)
    print('%d scenarios x 2 in %.1f s; nova\'s log: %s' % (
        len(records), elapsed, log_path), file=out)
    if json_path:
        with open(json_path, 'w') as f:
            json.dump({'nova_version': _nova_version(),
                       'elapsed_seconds': round(elapsed, 1),
                       'scenarios': records}, f, indent=2)
    return 1 if failed else 0


def _record(outcome, error):
    if outcome is None:
        return {'verdict': 'lab error', 'error': error}
    return outcome.as_dict()


def _nova_version():
    import importlib.metadata
    return importlib.metadata.version('nova')
