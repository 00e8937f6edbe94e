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
"""nova-compute has no database: code of nova-guardrails that runs inside
it never opens one.

On a compute node ``nova.cmd.compute`` disables nova's DB API and nova's
objects reach the database through nova-conductor; nova's install guide
gives compute nodes no ``[database]`` section. Two checks:

* statically, no module that nova-compute loads (everything but the
  operator tools ``audit``, ``bench``, ``cmd``, ``lab`` and
  ``rbd_trash``) imports ``nova.db``, SQLAlchemy or oslo.db's engine facade;
* at run time, the functional harness's ``NoDirectDatabaseAccess`` fixture
  fails a test whose guard code reaches nova's database other than through
  nova's objects; here it is shown to catch a direct access and to let an
  access through nova's objects pass.
"""

import ast
import pathlib
import unittest

import fixtures

from nova_guardrails.lab import harness

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / 'nova_guardrails'
OPERATOR_TOOLS = ('audit.py', 'bench.py', 'rbd_trash.py', 'cmd', 'lab')
FORBIDDEN = ('nova.db', 'sqlalchemy', 'oslo_db.sqlalchemy')


def _imports(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            for alias in node.names:
                yield '%s.%s' % (node.module, alias.name)


class StaticImportsTest(unittest.TestCase):

    def test_compute_side_modules_import_no_database(self):
        checked = []
        for path in sorted(PACKAGE.rglob('*.py')):
            relative = path.relative_to(PACKAGE)
            if relative.parts[0] in OPERATOR_TOOLS:
                continue
            checked.append(str(relative))
            for name in _imports(path):
                for forbidden in FORBIDDEN:
                    self.assertFalse(
                        name == forbidden or
                        name.startswith(forbidden + '.'),
                        '%s imports %s: nova-compute has no database'
                        % (relative, name))
        self.assertIn('queued.py', checked)
        self.assertIn('guards/recovery_table/__init__.py', checked)


def _probe(filename, body):
    """A function whose code object claims ``filename``."""
    namespace = {}
    exec(compile('def probe(call):\n    %s\n' % body, filename, 'exec'),
         namespace)
    return namespace['probe']


class RuntimeFixtureTest(unittest.TestCase):

    def access(self, via_objects):
        from nova.db.main import api as main_db_api
        guard = '/site/nova_guardrails/guards/probe.py'
        with fixtures.Fixture() as holder:
            fixture = harness.NoDirectDatabaseAccess()
            fixture.setUp()
            holder.addCleanup(fixture.cleanUp)
            get = lambda: main_db_api.get_context_manager(None)  # noqa
            if via_objects:
                nova_object = _probe('/site/nova/objects/probe.py',
                                     'return call()')
                _probe(guard, 'return call()')(lambda: nova_object(get))
            else:
                _probe(guard, 'return call()')(get)
            violations = list(fixture.violations)
            fixture.violations.clear()
        return violations

    def test_direct_access_is_caught(self):
        [violation] = self.access(via_objects=False)
        self.assertIn('nova_guardrails/guards/probe.py', violation)

    def test_access_through_nova_objects_passes(self):
        self.assertEqual([], self.access(via_objects=True))
