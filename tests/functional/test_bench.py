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
"""The start-up benchmark (``nova-guardrails bench``) at a tiny size.

Asserts its structure, not its times: both modes restarted and measured,
every instance initialised at every restart, the counts present. No
assertion on a duration.
"""

import unittest

from nova_guardrails import bench

SIZE = 3
#: One of the three instances in a transitional task_state.
PERCENT = 34


class BenchTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.result = bench.measure(SIZE, restarts=1,
                                   transitional_percent=PERCENT)

    def test_both_modes_restarted_and_measured(self):
        runs = self.result['restarts']
        self.assertEqual([bench.ALONE, bench.GUARDED],
                         [r['mode'] for r in runs])
        for mode in (bench.ALONE, bench.GUARDED):
            summary = self.result[mode]
            self.assertEqual(1, summary['restarts'])
            self.assertGreater(summary['median_seconds'], 0)
            self.assertGreater(summary['min_seconds'], 0)
        self.assertGreater(self.result['ratio_median'], 0)

    def test_every_instance_initialised(self):
        self.assertEqual(1, self.result['transitional_instances'])
        for run in self.result['restarts'] + [self.result['stable_guarded']]:
            self.assertEqual(SIZE, run['instances_initialised'], run)

    def test_counts_present(self):
        for run in self.result['restarts'] + [self.result['stable_guarded']]:
            # init_host reads the host's instances: SQL is always counted.
            self.assertGreater(run['sql_nova'], 0, run)
            for key in ('sql_placement', 'placement_requests',
                        'neutron_calls', 'guard_round_trips'):
                self.assertIsInstance(run[key], int, (key, run))
        alone, guarded = self.result['restarts']
        self.assertEqual(0, alone['guard_round_trips'])
        # The guards read through nova's objects at every guarded start-up.
        self.assertGreater(guarded['guard_round_trips'], 0)
        self.assertGreater(self.result['stable_guard_round_trips'], 0)
        # The guarded start-up reads more than nova alone's.
        self.assertGreater(guarded['sql_nova'], alone['sql_nova'])

    def test_report_renders_within_120_columns(self):
        report = {'machine': bench.machine(), 'restarts': 1,
                  'transitional_percent': PERCENT, 'sizes': [self.result],
                  'targets': bench.targets([self.result])}
        text = bench.render(report)
        self.assertIn('nova alone', text)
        self.assertIn('guarded', text)
        self.assertLessEqual(max(len(line) for line in text.splitlines()),
                             120)
        self.assertIn('nova-guardrails audit', text)
        self.assertEqual([None, None, None],
                         [t['met'] for t in report['targets']])

    def test_audit_timed_with_every_transitional_row(self):
        audit = self.result['audit']
        self.assertEqual(bench.AUDIT_RUNS, audit['runs'])
        self.assertEqual(self.result['transitional_instances'], audit['rows'])
        self.assertGreater(audit['median_seconds'], 0)
