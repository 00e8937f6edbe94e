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
"""Running the crash matrix: the clean trace, then one cell per crash point.

Each run is one ``unittest`` case of a fresh
:class:`~nova_guardrails.lab.harness.GuardrailsTestBase` (its own sqlite
databases, placement, fake RPC and fakelibvirt hypervisors), nova.conf
nova alone or guarded (:func:`_conf`; guarded with ``queued_grace_seconds
= 1``):

* :func:`trace`: the operation once, nova alone, recording its crash
  points (:class:`~nova_guardrails.lab.crash_matrix.tracer.Tracer`);
* :func:`run_cell`: the operation again, killed at one point; that
  nova-compute restarted keeping its hypervisor (nova's
  ``restart_compute_service``); the state left to settle (unchanged for
  :data:`QUIET` seconds, at most :data:`SETTLE_SECONDS`, while no guard
  has a queued re-check pending); the operation's ``revive`` hosts
  restarted; then the invariants
  (:func:`nova_guardrails.lab.crash_matrix.invariants.evaluate`);
* a late-delivery cell (``queueable`` operations): the request's RPC cast
  held while its nova-compute restarts, delivered after the queued grace
  period; besides the invariants, no hypervisor effect may happen more
  often than in one clean run (:func:`clean_effects`).

A run that fails outside the crash (the lab itself) gives a ``'lab
error'`` cell with the last line of its traceback.
"""

import dataclasses
import time

import fixtures

from nova_guardrails.lab.crash_matrix import invariants
from nova_guardrails.lab.crash_matrix import operations as lifecycle
from nova_guardrails.lab.crash_matrix import tracer as tracing


@dataclasses.dataclass
class Cell:
    """One run: an operation crashed at one point, one configuration.

    :ivar operation: the operation's name.
    :ivar point: the crash point's label (:meth:`CrashPoint.label`).
    :ivar guarded: nova-guardrails enabled.
    :ivar verdict: one of ``invariants.VERDICTS``, ``'not reached'`` or
        ``'lab error'``.
    :ivar failed: the failed invariants, in words.
    :ivar state: the settled :func:`invariants.snapshot_state` (plus
        ``before_revive`` or ``delivered`` for those cells).
    :ivar crashed: the crash happened in this run.
    """

    operation: str
    point: str
    guarded: bool
    verdict: str
    failed: list
    state: dict
    crashed: bool

    def as_dict(self):
        return dataclasses.asdict(self)


GUARDED_EXTRA = 'queued_grace_seconds = 1\n'
#: A cell's state is settled when it has not changed for QUIET seconds
#: (longer than the queued grace period), or after SETTLE_SECONDS.
QUIET = 1.5
SETTLE_SECONDS = 10


def _settle(test, server_id):
    deadline = time.monotonic() + SETTLE_SECONDS
    state = invariants.snapshot_state(test, server_id)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        current = invariants.snapshot_state(test, server_id)
        if current != state or _rechecks_pending(test):
            state, quiet_since = current, time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET:
            break
    return state


def _rechecks_pending(test):
    """Does a guard of a running compute still have deferred instances to
    look at again (recovery_table's queued re-check)?
    """
    for compute in list(test.computes.values()):
        guards = getattr(compute.driver, '_guardrails_guards', None) or ()
        for guard in guards:
            if getattr(guard, 'rechecks_pending', lambda: False)():
                return True
    return False


def _conf(operation, guarded):
    from nova_guardrails.lab import harness
    base = (harness.GUARDED_NOVA_CONF + GUARDED_EXTRA if guarded else
            harness.NOVA_ALONE_CONF)
    return base + operation.conf


def _run_case(nova_conf, body):
    """Run ``body(test)`` in a fresh GuardrailsTestBase; returns
    ``(result, error text)``.
    """
    from nova_guardrails.lab import harness
    import unittest
    results = {}

    class MatrixCase(harness.GuardrailsTestBase):
        NOVA_CONF = nova_conf

        def runTest(self):
            results['value'] = body(self)

    outcome = unittest.TestResult()
    MatrixCase('runTest').run(outcome)
    problems = outcome.errors + outcome.failures
    if problems:
        return None, problems[0][1]
    return results.get('value'), None


def _prepare(test, operation):
    test.matrix_connections = {}
    server = operation.prepare(test) or {}
    for host, compute in test.computes.items():
        test.matrix_connections[host] = \
            compute.driver._host.get_connection()
    return server


def trace(operation):
    """The crash points of ``operation`` (one clean run, nova alone).

    :returns: ``[CrashPoint]`` in the order they happened.
    :raises RuntimeError: the clean run failed.
    """
    def body(test):
        server = _prepare(test, operation)
        tracer = test.useFixture(tracing.Tracer(test))
        test.matrix_tracer = tracer
        tracer.armed = True
        for request, done in operation.steps:
            request(test, server)
            test.wait_until(lambda: done(test, server), timeout=60)
        # Let trailing work of the last step (casts) finish.
        time.sleep(0.5)
        tracer.armed = False
        return list(tracer.points)
    points, error = _run_case(_conf(operation, False), body)
    if error:
        raise RuntimeError('the clean run of %s failed:\n%s' % (
            operation.name, error))
    return points


def clean_effects(points):
    """``{(effect, host): n}``: the hypervisor effects one clean run of the
    operation makes (from its traced crash points).
    """
    out = {}
    for point in points:
        if point.kind == tracing.HYPERVISOR:
            key = (point.name, point.host)
            out[key] = max(out.get(key, 0), point.occurrence)
    return out


def _hold_compute_casts(test):
    """Hold every RPC cast to a nova-compute (the compute topic): the
    messages wait as in a queue whose consumer is down. Returns
    ``deliver()``, which stops holding and sends them.
    """
    from oslo_messaging.rpc import client
    held = []
    holding = [True]
    original = client._BaseCallContext.cast

    def cast(context, ctxt, method, **kwargs):
        if holding[0] and context.target.topic == 'compute':
            held.append((context, ctxt, method, kwargs))
            return None
        return original(context, ctxt, method, **kwargs)
    test.useFixture(fixtures.MonkeyPatch(
        'oslo_messaging.rpc.client._BaseCallContext.cast', cast))

    def deliver():
        holding[0] = False
        for context, ctxt, method, kwargs in held:
            original(context, ctxt, method, **kwargs)
        return [method for _, _, method, _ in held]
    return held, deliver


def _restart(test, host):
    """Restart nova-compute ``host`` keeping its hypervisor; False when it
    does not start.
    """
    try:
        test.restart_compute_service(host)
    except Exception:
        return False
    test.matrix_connections[host] = test.computes[
        host].driver._host.get_connection()
    return True


def _late_cell(operation, point, guarded, clean):
    """The operation's request cast while its nova-compute is down, held
    across a restart and delivered after the queued grace period; the
    invariants, and: the operation ran at most once (no hypervisor effect
    more often than in one clean run).
    """
    def body(test):
        server = _prepare(test, operation)
        tracer = test.useFixture(tracing.Tracer(test))
        test.matrix_tracer = tracer
        held, deliver = _hold_compute_casts(test)
        tracer.armed = True
        request, _done = operation.steps[0]
        request(test, server)
        deadline = time.monotonic() + 30
        while not held and time.monotonic() < deadline:
            time.sleep(0.05)
        if not held:
            return Cell(operation.name, point.label(), guarded,
                        invariants.NOT_REACHED,
                        ['no cast to a compute was made'], {}, False)
        started = _restart(test, point.host)
        _settle(test, server['id'])
        delivered = deliver()
        time.sleep(0.5)
        state = _settle(test, server['id'])
        tracer.armed = False
        verdict, failed = invariants.evaluate(state, operation, started)
        again = sorted(
            '%s on %s %d times (one run: %d)' % (name, host, n,
                                                 clean.get((name, host), 0))
            for (kind, name, host), n in tracer.counts.items()
            if kind == tracing.HYPERVISOR and n > clean.get((name, host), 0))
        if again:
            failed = failed + ['ran again after the late delivery of %s: '
                               '%s' % (', '.join(delivered),
                                       '; '.join(again))]
            verdict = invariants.LOST
        return Cell(operation.name, point.label(), guarded, verdict,
                    failed, dict(state, delivered=delivered), True)
    cell, error = _run_case(_conf(operation, guarded), body)
    if error:
        return Cell(operation.name, point.label(), guarded, 'lab error',
                    [error.strip().splitlines()[-1]], {}, False)
    return cell


def run_cell(operation, point, guarded, clean=None):
    """Crash ``operation`` at ``point``, restart, settle, evaluate.

    :param clean: :func:`clean_effects` of the operation (late-delivery
        cells only).
    :returns: a :class:`Cell`.
    """
    if point.kind == tracing.LATE:
        return _late_cell(operation, point, guarded, clean or {})

    def body(test):
        server = _prepare(test, operation)
        tracer = test.useFixture(tracing.Tracer(test, point))
        test.matrix_tracer = tracer
        tracer.armed = True
        for request, done in operation.steps:
            request(test, server)
            deadline = time.monotonic() + 60
            while not (tracer.crashed.is_set() or done(test, server)):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            if tracer.crashed.is_set():
                break
        tracer.armed = False
        started = True
        if tracer.crashed.is_set():
            # Let the dying thread unwind, then restart that nova-compute.
            time.sleep(0.2)
            started = _restart(test, point.host)
        state = _settle(test, server['id'])
        before_revive = state
        for host in operation.revive:
            # The repaired host comes back; nova-compute cleans up what was
            # evacuated away (and only that).
            test.restart_compute_service(host)
            test.matrix_connections[host] = test.computes[
                host].driver._host.get_connection()
            state = _settle(test, server['id'])
        verdict, failed = invariants.evaluate(state, operation, started)
        if not tracer.crashed.is_set():
            verdict, failed = invariants.NOT_REACHED, [
                'the crash point was not reached in this run']
        if operation.revive:
            state = dict(state, before_revive=before_revive)
        return Cell(operation.name, point.label(), guarded, verdict,
                    failed, state, tracer.crashed.is_set())
    cell, error = _run_case(_conf(operation, guarded), body)
    if error:
        return Cell(operation.name, point.label(), guarded, 'lab error',
                    [error.strip().splitlines()[-1]], {}, False)
    return cell


def run(operations=None, guards='both', progress=None):
    """Run the matrix; returns ``{'points': {op: [labels]}, 'cells':
    [Cell]}``.

    :param operations: operation names (default: all of
        :data:`nova_guardrails.lab.crash_matrix.operations.OPERATIONS`).
    :param guards: ``'on'``, ``'off'`` or ``'both'``.
    :param progress: optional ``f(text)`` called per cell.
    """
    import logging
    import warnings
    warnings.simplefilter('ignore')
    logging.getLogger().setLevel(logging.WARNING)
    selected = [lifecycle.BY_NAME[name] for name in operations] \
        if operations else lifecycle.OPERATIONS
    configs = {'on': [True], 'off': [False], 'both': [False, True]}[guards]
    result = {'points': {}, 'cells': [], 'trace_errors': {}}
    for operation in selected:
        try:
            points = trace(operation)
        except RuntimeError as error:
            result['trace_errors'][operation.name] = str(error)[-2000:]
            if progress:
                progress('%s: trace failed' % operation.name)
            continue
        clean = clean_effects(points)
        if operation.queueable:
            points = points + [tracing.CrashPoint(tracing.LATE, 'request',
                                                  lifecycle.H1, 1)]
        result['points'][operation.name] = [p.label() for p in points]
        for point in points:
            for guarded in configs:
                cell = run_cell(operation, point, guarded, clean)
                result['cells'].append(cell)
                if progress:
                    progress('%s | %s | %s: %s %s' % (
                        operation.name, point.label(),
                        'guarded' if guarded else 'nova alone',
                        cell.verdict, '; '.join(cell.failed)))
    return result
