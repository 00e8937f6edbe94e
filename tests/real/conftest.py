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
"""The real deployment tier as pytest fixtures.

``tier`` (session): the whole deployment (:class:`deployment.Tier`), up once
for the run, down at its end (no process left: checked). When the machine
lacks what it needs, the tier skips, except under ``CI=true``, where it
fails (``make test-real`` installs everything first).

``clean`` (function, autouse): after each test every nova-compute of the
test is killed, every server is deleted, and the hypervisors, the rbd pool
and placement are left empty, so each scenario starts from the same state.

``GUARDRAILS_REAL_KEEP=1`` keeps the tier's directory (logs, configuration)
after the run.
"""

import os
import time

import pytest

from real import deployment


#: What each scenario measured, printed at the end of the run.
MEASURED = {}


def pytest_terminal_summary(terminalreporter):
    if not MEASURED:
        return
    terminalreporter.section('real tier: measured outcomes')
    for name, outcome in MEASURED.items():
        terminalreporter.write_line('%s: %s' % (name, outcome))


@pytest.fixture
def measured(request):
    """``measured(key=value, ...)``: what the scenario saw, for the
    summary of the run.
    """
    def record(**values):
        MEASURED.setdefault(request.node.name, {}).update(values)
    return record


@pytest.fixture(scope='session')
def tier():
    lacking = deployment.missing()
    if lacking:
        message = ('the real deployment tier needs: %s (make test-real '
                   'installs them)' % ', '.join(lacking))
        if os.environ.get('CI') == 'true':
            pytest.fail(message)
        pytest.skip(message)
    tier = deployment.Tier(keep=os.environ.get('GUARDRAILS_REAL_KEEP') == '1')
    tier.start()
    print('\nreal tier up in %ss under %s: %s' % (
        tier.timings['up'], tier.dir, tier.timings))
    try:
        yield tier
    finally:
        peak = tier.peak_rss_mb
        tier.stop()
        MEASURED['tier'] = {'peak_rss_mb': peak, 'timings': tier.timings}
        assert tier.alive_pids() == [], tier.alive_pids()


@pytest.fixture(autouse=True)
def clean(request):
    if 'tier' not in request.fixturenames:
        yield
        return
    tier = request.getfixturevalue('tier')
    started = time.monotonic()
    yield
    try:
        tier.sample_rss()
        tier.reset()
    finally:
        tier.timings['test %s' % request.node.name] = round(
            time.monotonic() - started, 1)
