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
"""crash_matrix.evaluate: each invariant, broken alone, is reported."""

import unittest

from nova_guardrails.lab import crash_matrix

OP = crash_matrix.Operation('stop', None, [])
DELETE = crash_matrix.Operation('delete', None, [], deletes=True)


def state(**changes):
    good = {'exists': True, 'vm_state': 'active', 'task_state': None,
            'host': 'compute1', 'guests': {'compute1': 'running'},
            'allocations': ['compute1'], 'migration_allocations': {}}
    good.update(changes)
    return good


class EvaluateTest(unittest.TestCase):

    def verdict(self, operation=OP, started=True, **changes):
        return crash_matrix.evaluate(state(**changes), operation, started)

    def test_consistent(self):
        self.assertEqual(('recovered', []), self.verdict())
        self.assertEqual(('recovered', []), self.verdict(
            vm_state='stopped', guests={'compute1': 'shutdown'}))
        self.assertEqual(('recovered', []), self.verdict(
            vm_state='shelved_offloaded', host=None, guests={},
            allocations=[]))

    def test_error_is_stable_not_recovered(self):
        self.assertEqual(('error', []), self.verdict(
            vm_state='error', guests={'compute1': 'shutdown'}))
        # A build interrupted before its claim: no host, nova keeps the
        # node's allocation until the server is deleted.
        self.assertEqual(('error', []), self.verdict(
            vm_state='error', host=None, guests={}))
        self.assertEqual('stuck', self.verdict(
            vm_state='error', host=None, guests={},
            allocations=['compute1', 'compute2'])[0])

    def test_each_broken_invariant(self):
        for changes, verdict, text in (
                ({'task_state': 'suspending'}, 'stuck',
                 'task_state suspending'),
                ({'guests': {'compute1': 'shutdown'}}, 'stuck',
                 'vm_state active but the guest is shutdown'),
                ({'guests': {}}, 'lost', 'no guest on compute1'),
                ({'guests': {'compute1': 'running',
                             'compute2': 'running'}}, 'lost',
                 'guest running on compute1, compute2'),
                ({'allocations': ['compute2']}, 'stuck',
                 "allocations on ['compute2'], instance on compute1"),
                ({'migration_allocations': {'m': {}}}, 'stuck',
                 'migration(s) still hold allocations'),
                ({'exists': False}, 'lost', 'instance deleted')):
            got, failed = self.verdict(**changes)
            self.assertEqual(verdict, got, changes)
            self.assertTrue(any(text in f for f in failed), (changes,
                                                             failed))

    def test_compute_down(self):
        self.assertEqual(('stuck', ['nova-compute did not start']),
                         self.verdict(started=False))

    def test_delete(self):
        self.assertEqual(('recovered', []), self.verdict(
            DELETE, exists=False, allocations=[]))
        self.assertEqual('stuck', self.verdict(
            DELETE, exists=False, allocations=['compute1'])[0])
