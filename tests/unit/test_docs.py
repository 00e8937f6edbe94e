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
