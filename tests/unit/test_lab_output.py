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

"""The lab's output: one line per scenario within 120 columns, and JSON.

Rendered from a fixed result structure (what ``nova-guardrails lab --json``
writes), without running nova.
"""

import io
import json
import os
import tempfile
import unittest
from unittest import mock

from nova_guardrails.cmd import cli
from nova_guardrails.lab import runner
from nova_guardrails.lab import scenarios


def _side(verdict, details):
    return {'verdict': verdict, 'details': details}


def _record(name, label, alone, guarded, situation='active / x / running'):
    return {
        'scenario': name, 'title': label.split(': ', 1)[-1],
        'source': 'nova bug 1072751', 'label': label,
        'situation': situation,
        'nova_alone': _side(alone, 'active / reboot_started / running'),
        'guardrails': _side(
            guarded, 'active / - / running\naction: reboot_hard (done)'),
        'verdict': runner.compare(alone, guarded)}


def document(records=None):
    if records is None:
        records = [
            _record('soft_reboot_guest_off',
                    'bug 1072751: soft reboot, died after guest shut down',
                    'recovered', 'recovered'),
            _record('startup_reboot_fails',
                    'bug 1072751: soft reboot, guest then fails to start',
                    'compute down', 'error'),
            _record('standby_over_guests',
                    'bug 1419785: HA standby B starts over A\'s guests',
                    'started on a hypervisor registered twice',
                    'refused, guests intact', 'A ' * 80),
            _record('evacuation_destination_died',
                    'bug 1419785: evacuated while down, destination died',
                    'guest destroyed', 'guest kept, powered off'),
            _record('evacuation_spawn_fails_rbd',
                    'bug 1419785: evacuation spawn fails, root disk rbd',
                    'data lost', 'not run'),
            _record('broken', 'x' * 200, 'lab error', 'stuck'),
            _record('a_verdict_nobody_knows',
                    'bp stuck states: a verdict this table never saw',
                    'something new and much longer than the column',
                    'recovered'),
        ]
    return {'nova_version': '34.0.0', 'elapsed_seconds': 89.9,
            'log': '/tmp/nova-guardrails-lab-abcdefgh.log',
            'scenarios': records}


class LabTableTest(unittest.TestCase):

    def assertFits(self, text, width=120):
        widest = max(text.splitlines(), key=len)
        self.assertLessEqual(len(widest), width, widest)

    def test_one_line_per_scenario_within_120_columns(self):
        doc = document()
        with mock.patch.dict(os.environ, {'COLUMNS': '120'}):
            text = runner.report(doc)
        self.assertFits(text)
        rows = [line for line in runner.table(doc['scenarios'], width=120)
                .splitlines() if line.startswith('| ')]
        # The header and one row per scenario.
        self.assertEqual(1 + len(doc['scenarios']), len(rows))
        self.assertIn('| bug 1072751: soft reboot, died after guest shut '
                      'down ', text)
        self.assertIn('fixed', text)
        self.assertIn('lab error', text)
        self.assertIn('not run', text)

    def test_columns_wider_than_120_still_fit_120(self):
        with mock.patch.dict(os.environ, {'COLUMNS': '300'}):
            self.assertFits(runner.report(document()))

    def test_narrower_columns(self):
        with mock.patch.dict(os.environ, {'COLUMNS': '100'}):
            self.assertFits(runner.report(document()), 100)

    def test_every_scenario_label_fits_untruncated(self):
        records = [_record(s.name, s.label, 'started on a hypervisor '
                           'registered twice', 'refused, guests intact')
                   for s in scenarios.BY_NAME.values()]
        for s in scenarios.BY_NAME.values():
            self.assertTrue(s.label, s.name)
        text = runner.report(document(records), width=120)
        self.assertFits(text)
        for s in scenarios.BY_NAME.values():
            self.assertIn('| %s ' % s.label, text)

    def test_verbose_has_the_details(self):
        text = runner.report(document(), verbose=True)
        self.assertIn('action: reboot_hard (done)', text)
        self.assertIn('situation (at the crash)', text)

    def test_verdicts(self):
        self.assertEqual('same', runner.compare('recovered', 'recovered'))
        self.assertEqual('fixed', runner.compare('stuck', 'recovered'))
        self.assertEqual('better', runner.compare('compute down', 'error'))
        self.assertEqual('WORSE', runner.compare('recovered', 'stuck'))
        self.assertEqual('changed', runner.compare(
            'stuck', 'started on a hypervisor registered twice'))
        self.assertEqual('not run', runner.compare('not run', 'not run'))


class LabJsonTest(unittest.TestCase):

    def test_json_parses(self):
        doc = document()
        out = io.StringIO()
        runner.write_json(doc, out)
        self.assertEqual(doc, json.loads(out.getvalue()))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'lab.json')
            with open(path, 'w') as f:
                runner.write_json(doc, f)
            with open(path) as f:
                self.assertEqual(doc['scenarios'], json.load(f)['scenarios'])

    def test_json_to_stdout_is_only_json(self):
        # --json -: the document alone on the standard output, no table.
        doc = document()
        out = io.StringIO()
        runner.emit(doc, out, '-')
        self.assertEqual(doc, json.loads(out.getvalue()))

    def test_json_file_beside_the_table(self):
        doc = document()
        out = io.StringIO()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'lab.json')
            runner.emit(doc, out, path)
            with open(path) as f:
                self.assertEqual(doc, json.load(f))
        self.assertIn('| scenario ', out.getvalue())

    def test_cli_options(self):
        args = cli.build_parser().parse_args(
            ['lab', '--verbose', '--json', '-', '--scenario', 'x'])
        self.assertEqual((True, '-', ['x']),
                         (args.verbose, args.json, args.scenario))
        self.assertFalse(cli.build_parser().parse_args(['lab']).verbose)
