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
"""The documentation builds without a warning (what `make docs` runs)."""

import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
SPHINX = os.path.join(os.path.dirname(sys.executable), 'sphinx-build')


class DocsTest(unittest.TestCase):

    def test_build_without_warnings(self):
        with tempfile.TemporaryDirectory() as out:
            result = subprocess.run(
                [SPHINX, '-E', '-W', '--keep-going', '-q', '-b', 'html',
                 'doc/source', out], cwd=ROOT, capture_output=True,
                text=True)
            self.assertEqual(0, result.returncode, result.stderr)
            with open(os.path.join(out, 'releasenotes.html')) as f:
                notes = f.read()
            for guard in ('recovery_table', 'host_identity', 'revert_vif'):
                self.assertIn(guard, notes)
            with open(os.path.join(out, 'configuration.html')) as f:
                self.assertIn('max_startup_destroys', f.read())
