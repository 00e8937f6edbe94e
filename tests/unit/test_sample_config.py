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
"""etc/nova-guardrails.conf.sample is what oslo-config-generator makes."""

import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
GENERATOR = os.path.join(os.path.dirname(sys.executable),
                         'oslo-config-generator')


class SampleConfigTest(unittest.TestCase):

    def test_committed_sample_is_current(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, 'sample')
            subprocess.run(
                [GENERATOR, '--config-file',
                 'etc/oslo-config-generator/nova-guardrails.conf',
                 '--output-file', out], cwd=ROOT, check=True,
                capture_output=True)
            with open(out) as f:
                generated = f.read()
        with open(os.path.join(ROOT, 'etc',
                               'nova-guardrails.conf.sample')) as f:
            committed = f.read()
        self.assertEqual(
            generated, committed,
            'etc/nova-guardrails.conf.sample is out of date: run '
            'oslo-config-generator --config-file '
            'etc/oslo-config-generator/nova-guardrails.conf')
