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
"""devstack plugin phases against a temporary nova.conf.

Not a run in a real devstack (it cannot run on these machines): the plugin
is sourced the way stack.sh/clean.sh source it, with the few devstack
functions it calls provided by tests/devstack/fake-devstack.sh.
"""

import configparser
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
FAKE = os.path.join(ROOT, 'tests', 'devstack', 'fake-devstack.sh')
SHELLCHECK = os.path.join(os.path.dirname(sys.executable), 'shellcheck')


class DevstackPluginTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.nova_conf = os.path.join(self.tmp.name, 'nova.conf')
        self.cpu_conf = os.path.join(self.tmp.name, 'nova-cpu.conf')
        for path in (self.nova_conf, self.cpu_conf):
            with open(path, 'w') as f:
                f.write('[DEFAULT]\ncompute_driver = libvirt.LibvirtDriver\n'
                        'state_path = %s\n' % self.tmp.name)
        self.pip_log = os.path.join(self.tmp.name, 'pip.log')

    def phase(self, *args, **env):
        script = ('source "%s"; source devstack/settings; '
                  'source devstack/plugin.sh %s' % (FAKE, ' '.join(args)))
        environ = dict(os.environ, DEST='/opt/stack',
                       NOVA_CONF=self.nova_conf, NOVA_CPU_CONF=self.cpu_conf,
                       PIP_LOG=self.pip_log, **env)
        return subprocess.run(['bash', '-c', script], cwd=ROOT, env=environ,
                              capture_output=True, text=True, check=True)

    def conf(self, path):
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path)
        return parser

    def test_install_not_editable(self):
        self.phase('stack', 'install')
        with open(self.pip_log) as f:
            self.assertEqual('pip_install /opt/stack/nova-guardrails\n',
                             f.read())

    def test_post_config_switches_the_driver(self):
        self.phase('stack', 'post-config')
        for path in (self.nova_conf, self.cpu_conf):
            conf = self.conf(path)
            self.assertEqual('guardrails.GuardrailsDriver',
                             conf['DEFAULT']['compute_driver'])
            self.assertEqual('libvirt.LibvirtDriver',
                             conf['guardrails']['driver'])
            self.assertEqual(
                'recovery_table,host_identity,revert_vif,rbd_root_disk',
                conf['guardrails']['enabled_guards'])

    def test_post_config_twice_keeps_the_real_driver(self):
        self.phase('stack', 'post-config')
        self.phase('stack', 'post-config')
        conf = self.conf(self.nova_conf)
        self.assertEqual('libvirt.LibvirtDriver', conf['guardrails']['driver'])

    def test_guards_from_variable(self):
        self.phase('stack', 'post-config',
                   NOVA_GUARDRAILS_GUARDS='recovery_table')
        self.assertEqual('recovery_table', self.conf(
            self.cpu_conf)['guardrails']['enabled_guards'])

    def test_clean_restores_the_driver(self):
        self.phase('stack', 'post-config')
        self.phase('unstack')
        self.phase('clean')
        for path in (self.nova_conf, self.cpu_conf):
            conf = self.conf(path)
            self.assertEqual('libvirt.LibvirtDriver',
                             conf['DEFAULT']['compute_driver'])
            self.assertFalse(conf.has_option('guardrails', 'driver'))
            self.assertFalse(conf.has_option('guardrails', 'enabled_guards'))

    def test_extra_reports(self):
        self.phase('stack', 'post-config')
        result = self.phase('stack', 'extra')
        self.assertIn('no start-up report at %s/guardrails/'
                      'startup-report.json yet' % self.tmp.name,
                      result.stderr)

    def test_not_enabled_does_nothing(self):
        script = ('source "%s"; source devstack/plugin.sh stack '
                  'post-config' % FAKE)
        subprocess.run(['bash', '-c', script], cwd=ROOT, check=True,
                       env=dict(os.environ, NOVA_CONF=self.nova_conf,
                                NOVA_CPU_CONF=self.cpu_conf))
        self.assertEqual('libvirt.LibvirtDriver', self.conf(
            self.nova_conf)['DEFAULT']['compute_driver'])

    def test_shellcheck(self):
        result = subprocess.run(
            [SHELLCHECK, '-s', 'bash', 'devstack/plugin.sh',
             'devstack/settings', 'tests/devstack/fake-devstack.sh',
             '.ci/run'],
            cwd=ROOT, capture_output=True, text=True)
        self.assertEqual(0, result.returncode, result.stdout)
