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
"""What the installed distribution puts where (an operator's pip install)."""

import importlib.metadata
import unittest


class PackagingTest(unittest.TestCase):

    def test_one_shim_in_novas_namespace(self):
        files = importlib.metadata.files('nova-guardrails')
        in_nova = sorted(str(f) for f in files
                         if str(f).startswith('nova/') and
                         not str(f).endswith('.pyc'))
        self.assertEqual(['nova/virt/guardrails.py'], in_nova)

    def test_not_an_editable_install(self):
        dist = importlib.metadata.distribution('nova-guardrails')
        direct_url = dist.read_text('direct_url.json') or '{}'
        self.assertNotIn('"editable": true', direct_url)
        import nova_guardrails
        self.assertIn('site-packages', nova_guardrails.__file__)

    def test_shim_reexports_the_driver(self):
        from nova.virt import guardrails as shim
        from nova_guardrails import driver
        self.assertIs(driver.GuardrailsDriver, shim.GuardrailsDriver)
        self.assertEqual(['GuardrailsDriver'], shim.__all__)

    def test_console_script(self):
        eps = importlib.metadata.entry_points(group='console_scripts',
                                              name='nova-guardrails')
        self.assertEqual(['nova_guardrails.cmd.cli:main'],
                         [ep.value for ep in eps])
