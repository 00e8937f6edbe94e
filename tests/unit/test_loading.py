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

import inspect
import json
import os
import subprocess
import sys
import tempfile
import unittest

from oslo_config import cfg
import stevedore

from nova_guardrails import conf as guardrails_conf
from nova_guardrails import driver as guardrails_driver
from nova_guardrails import exception
from nova_guardrails import guards
from nova_guardrails.guards import base
from nova_guardrails.guards import recovery_table
from nova_guardrails import report as report_mod

import third_party_guard


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


class GuardOptionsTest(unittest.TestCase):
    """A guard's CONFIG_OPTS: registered at load, listed, never clashing.

    With a third-party guard installed (tests/third_party_guard).
    """

    CORE = ['driver', 'enabled_guards', 'report_path']

    def setUp(self):
        fixture = third_party_guard.ThirdPartyGuard()
        fixture.setUp()
        self.addCleanup(fixture.cleanUp)
        self.conf = cfg.ConfigOpts()
        self.conf.register_opt(cfg.StrOpt('state_path', default='/state'))
        self.report = report_mod.StartupReport('/nonexistent', 'h', [])

    def parse(self, text):
        with tempfile.NamedTemporaryFile('w', suffix='.conf') as f:
            f.write(text)
            f.flush()
            self.conf(['--config-file', f.name], default_config_files=[])

    def test_registered_at_load_and_read_from_the_file(self):
        self.parse('[guardrails]\nexample_greeting = bonjour\n')
        guardrails_conf.register_opts(self.conf)
        self.assertFalse(hasattr(self.conf.guardrails, 'example_greeting'))
        [guard] = guards.load(['example'], self.conf, self.report)
        self.assertEqual('example', guard.name)
        self.assertEqual('bonjour', guard.greeting)
        self.assertEqual(3, guard.limit)
        self.assertEqual('bonjour', self.conf.guardrails.example_greeting)
        # Loading again registers nothing new and clashes with nothing.
        guards.load(['example'], self.conf, self.report)

    def test_clash_with_nova_guardrails_own_option(self):
        guardrails_conf.register_opts(self.conf)
        error = self.assertRaises(
            exception.GuardrailsConfigError, guards.load,
            ['recovery_table', 'example_clash'], self.conf, self.report)
        self.assertIn('[guardrails] report_path: guard \'example_clash\' '
                      '(example_guard:ClashingGuard)', str(error))

    def test_clash_with_another_registered_option(self):
        self.conf.register_opt(cfg.IntOpt('example_greeting'),
                               group='guardrails')
        error = self.assertRaises(exception.GuardrailsConfigError,
                                  guards.register_opts, self.conf,
                                  ['example'])
        self.assertIn('[guardrails] example_greeting: guard \'example\'',
                      str(error))

    def test_register_named_guards(self):
        registered = guards.register_opts(self.conf, ['revert_vif',
                                                      'example'])
        self.assertEqual([('revert_vif', ['revert_vif_policy']),
                          ('example', ['example_greeting', 'example_limit'])],
                         [(name, [o.dest for o in opts])
                          for name, opts in registered])
        self.assertEqual('fix', self.conf.guardrails.revert_vif_policy)
        self.assertEqual('hello', self.conf.guardrails.example_greeting)
        self.assertFalse(hasattr(self.conf.guardrails, 'rbd_trash_delay'))

    def test_register_every_installed_guard(self):
        with self.assertLogs('nova_guardrails', 'WARNING') as logs:
            guards.register_opts(self.conf)
        for name in ('allow_takeover_from', 'revert_vif_policy',
                     'rbd_trash_delay', 'example_greeting'):
            self.assertTrue(hasattr(self.conf.guardrails, name), name)
        self.assertEqual('/state/guardrails/startup-report.json',
                         self.conf.guardrails.report_path)
        text = '\n'.join(logs.output)
        self.assertIn('example_broken', text)
        self.assertIn('[guardrails] report_path: guard \'example_clash\'',
                      text)

    def test_list_opts(self):
        with self.assertLogs('nova_guardrails', 'WARNING') as logs:
            [(group, opts)] = guardrails_conf.list_opts()
        self.assertEqual('guardrails', group.name)
        # nova-guardrails' own, the shipped guards' in enabled_guards'
        # default order, then the other installed guards' by name.
        self.assertEqual(self.CORE + [
            'recovery_overrides', 'queued_grace_seconds',
            'allow_takeover_from', 'max_startup_destroys',
            'revert_vif_policy', 'rbd_trash_delay', 'example_greeting',
            'example_limit'], [o.dest for o in opts])
        self.assertIs(guardrails_conf.guardrails_opts[2], opts[2])
        text = '\n'.join(logs.output)
        self.assertIn("guard 'example_broken' "
                      '(example_guard.no_such_module:NoSuchGuard) failed to '
                      'load', text)
        self.assertIn('report_path of guard \'example_clash\' clashes',
                      text)

    def test_oslo_config_generator(self):
        generator = os.path.join(os.path.dirname(sys.executable),
                                 'oslo-config-generator')
        env = dict(os.environ)
        env['PYTHONPATH'] = os.pathsep.join(
            [third_party_guard.DIST_PATH] + [
                p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
        with tempfile.TemporaryDirectory() as tmp:
            env['XDG_CACHE_HOME'] = tmp
            result = subprocess.run(
                [generator, '--namespace', 'nova_guardrails'], env=env,
                capture_output=True, text=True, check=True)
        self.assertIn('#example_greeting = hello', result.stdout)
        self.assertIn('#revert_vif_policy = fix', result.stdout)
        self.assertEqual(1, result.stdout.count('#report_path = '))
        self.assertIn('example_broken', result.stderr)

    def assertRaises(self, error, function, *args):
        with super().assertRaises(error) as context:
            function(*args)
        return context.exception


def _parameters(function):
    return [name for name in inspect.signature(function).parameters
            if name != 'self']


class HookDeclarationTest(unittest.TestCase):
    """MANAGER_HOOKS and DRIVER_HOOKS are the one list of hooks."""

    def test_manager_hooks_match_nova_and_guard(self):
        from nova.compute import manager as compute_manager
        for hook, method in base.MANAGER_HOOKS.items():
            nova_params = _parameters(
                getattr(compute_manager.ComputeManager, method))
            # Guard.<hook>(manager, <nova's parameters>, call_next)
            self.assertEqual(['manager'] + nova_params + ['call_next'],
                             _parameters(getattr(base.Guard, hook)), hook)

    def test_driver_hooks_pass_through(self):
        from nova.virt import driver as nova_driver
        for name in base.DRIVER_HOOKS:
            self.assertTrue(callable(getattr(nova_driver.ComputeDriver,
                                             name)), name)
            self.assertIn(name, guardrails_driver._OWN_ATTRIBUTES)
            hook = getattr(base.Guard, name)
            self.assertEqual(['manager', 'args', 'call_next', 'kwargs'],
                             _parameters(hook), name)
            self.assertEqual(('a', 1), hook(None, None, 'a', call_next=(
                lambda *args, **kwargs: args + tuple(kwargs.values())),
                b=1))

    def test_own_attributes(self):
        # The wrapper's methods and state; nothing the real driver has
        # but the methods it wraps.
        for name in ('init_host', 'cleanup_host', 'guardrails_bind',
                     '_guardrails_driver', '_guardrails_manager'):
            self.assertIn(name, guardrails_driver._OWN_ATTRIBUTES)
        for name in ('capabilities', '_host', 'spawn', 'destroy'):
            self.assertNotIn(name, guardrails_driver._OWN_ATTRIBUTES)


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
