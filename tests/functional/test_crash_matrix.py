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
"""The crash matrix's fast subset on real nova 34 (every CI run).

The full matrix (every operation) has its own command, ``nova-guardrails
crash-matrix``; its latest result is doc/crash-matrix.md.
"""

import unittest

from nova_guardrails.lab import crash_matrix


class FastSubsetTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.result = crash_matrix.run(crash_matrix.FAST_SUBSET, 'both')
        cls.cells = cls.result['cells']

    def cells_of(self, guarded):
        return [c for c in self.cells if c.guarded == guarded]

    def test_every_operation_traced_and_run(self):
        self.assertEqual({}, self.result['trace_errors'])
        for name in crash_matrix.FAST_SUBSET:
            points = self.result['points'][name]
            self.assertGreaterEqual(len(points), 2, name)
            # Both task_state transitions and hypervisor side effects.
            self.assertTrue(any(p.startswith('task_state') for p in points))
            self.assertTrue(any(p.startswith('after') for p in points))
        self.assertEqual(
            2 * sum(len(p) for p in self.result['points'].values()),
            len(self.cells))
        for cell in self.cells:
            self.assertIn(cell.verdict, crash_matrix.VERDICTS, cell)
            self.assertTrue(cell.crashed, cell)

    def test_guarded_column_has_no_stuck_or_lost_cell(self):
        bad = [(c.operation, c.point, c.verdict, c.failed)
               for c in self.cells_of(True)
               if c.verdict in (crash_matrix.STUCK, crash_matrix.LOST)]
        self.assertEqual([], bad)

    def test_nova_alone_column_as_measured(self):
        # nova 34 alone leaves these stuck (the matrix can see it).
        by_point = {(c.operation, c.point): c for c in self.cells_of(False)}
        suspend = by_point[('suspend', 'after managedSave on compute1')]
        self.assertEqual(crash_matrix.STUCK, suspend.verdict)
        self.assertIn('task_state suspending', suspend.failed)
        stuck = [c for c in self.cells_of(False)
                 if c.verdict != crash_matrix.RECOVERED]
        self.assertGreaterEqual(len(stuck), 5)
