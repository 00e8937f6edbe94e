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
"""Guards by stevedore, options by oslo.config: errors name the option."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

from oslo_config import cfg
import stevedore

from nova_guardrails import conf as guardrails_conf
from nova_guardrails import exception
from nova_guardrails import guards
from nova_guardrails.guards import recovery_table
from nova_guardrails import report as report_mod


class GuardLoaderTest(unittest.TestCase):

    def setUp(self):
        self.conf = cfg.ConfigOpts()
        guardrails_conf.register_opts(self.conf)
        self.report = report_mod.StartupReport('/nonexistent', 'h', [])

    def test_installed_entry_points(self):
        self.assertEqual(['host_identity', 'rbd_root_disk',
                          'recovery_table', 'revert_vif'],
                         guards.available())

    def test_load_by_name(self):
        loaded = guards.load(['recovery_table'], self.conf, self.report)
        self.assertEqual(1, len(loaded))
        self.assertIsInstance(loaded[0], recovery_table.RecoveryTableGuard)
        self.assertEqual('recovery_table', loaded[0].name)
        self.assertIs(self.report, loaded[0].report)

    def test_unknown_name(self):
        with self.assertRaises(exception.GuardrailsConfigError) as ctx:
            guards.load(['recovery_table', 'nope'], self.conf, self.report)
        self.assertIn('[guardrails] enabled_guards', str(ctx.exception))
        self.assertIn('nope', str(ctx.exception))

    def test_empty(self):
        self.assertEqual([], guards.load([], self.conf, self.report))


class OptionsTest(unittest.TestCase):

    def test_entry_point(self):
        manager = stevedore.NamedExtensionManager(
            'oslo.config.opts', ['nova_guardrails'])
        [(group, opts)] = manager['nova_guardrails'].plugin()
        self.assertEqual('guardrails', group.name)
        self.assertEqual({'driver', 'enabled_guards', 'report_path',
                          'allow_takeover_from', 'max_startup_destroys',
                          'revert_vif_policy', 'rbd_trash_delay',
                          'recovery_overrides', 'queued_grace_seconds'},
                         {o.name for o in opts})
        for opt in opts:
            self.assertTrue(opt.help and len(opt.help) > 40, opt.name)

    def test_oslo_config_generator(self):
        generator = os.path.join(os.path.dirname(sys.executable),
                                 'oslo-config-generator')
        out = subprocess.run(
            [generator, '--namespace', 'nova_guardrails'],
            capture_output=True, text=True, check=True).stdout
        self.assertIn('[guardrails]', out)
        for line in ('#driver = <None>',
                     '#enabled_guards = recovery_table,host_identity,'
                     'revert_vif,rbd_root_disk',
                     '#revert_vif_policy = fix',
                     '#report_path = $state_path/guardrails/'
                     'startup-report.json'):
            self.assertIn(line, out)


class ReportTest(unittest.TestCase):

    def test_write_and_log(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'sub', 'report.json')
            report = report_mod.StartupReport(path, 'host1', ['g'])
            report.begin()
            before = report_mod.InstanceState('active', 'reboot_started',
                                              'shutdown')
            after = report_mod.InstanceState('active', None, 'running')
            with self.assertLogs('nova_guardrails.report', 'INFO') as logs:
                report.record(report_mod.Decision(
                    guard='g', instance_uuid='u1', before=before,
                    action='reboot_hard', reason='why', after=after))
                report.finish('completed')
            self.assertIn('instance u1 before [vm_state=active '
                          'task_state=reboot_started power_state=shutdown] '
                          'action reboot_hard by guardrails (why) -> done, '
                          'after [vm_state=active task_state=None '
                          'power_state=running]', logs.output[0])
            with open(path) as f:
                doc = json.load(f)
            self.assertEqual('completed', doc['status'])
            self.assertEqual('host1', doc['host'])
            self.assertEqual('reboot_hard', doc['decisions'][0]['action'])
            self.assertEqual({'vm_state': 'active', 'task_state': None,
                              'power_state': 'running'},
                             doc['decisions'][0]['after'])
            self.assertEqual(['report.json'], os.listdir(os.path.dirname(
                path)))

    def test_unwritable_path_does_not_raise(self):
        report = report_mod.StartupReport('/proc/nope/report.json', 'h', [])
        report.begin()
        with self.assertLogs('nova_guardrails.report', 'ERROR'):
            report.finish('completed')
