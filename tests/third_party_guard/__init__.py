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
"""A third-party guard installed for one test (:class:`ThirdPartyGuard`).

This directory is a sys.path entry holding a tiny distribution, as pip
would leave it in site-packages: the module ``example_guard`` and its
``example_guard-0.1.dist-info`` (METADATA and entry_points.txt, which
importlib.metadata and stevedore read). Its entry points in the
``nova_guardrails.guards`` namespace:

- ``example``: :class:`example_guard.ExampleGuard`, a guard with options of
  its own (``CONFIG_OPTS``);
- ``example_clash``: a guard whose option takes the name of
  nova-guardrails' ``report_path``;
- ``example_broken``: names a module that does not exist (fails to import).
"""

import importlib
import os
import sys

import fixtures
from stevedore import _cache

#: The sys.path entry of the distribution.
DIST_PATH = os.path.dirname(os.path.abspath(__file__))


class ThirdPartyGuard(fixtures.Fixture):
    """example_guard installed for the test, uninstalled at its clean-up.

    stevedore keeps entry points in two caches: per namespace for the
    process (``ExtensionManager.ENTRY_POINT_CACHE``) and in a file keyed by
    sys.path (``stevedore._cache``, under ``~/.cache/python-entrypoints``).
    Both are replaced by empty ones for the test: a temporary directory for
    the file.
    """

    def _setUp(self):
        cache = _cache.Cache(
            cache_dir=self.useFixture(fixtures.TempDir()).path)
        for name in ('get_group_all', 'get_group_named', 'get_single'):
            self.useFixture(fixtures.MonkeyPatch(
                'stevedore._cache.%s' % name, getattr(cache, name)))
        self.useFixture(fixtures.MonkeyPatch(
            'stevedore.extension.ExtensionManager.ENTRY_POINT_CACHE', {}))
        self.useFixture(fixtures.MonkeyPatch('sys.path',
                                             [DIST_PATH] + sys.path))
        self.addCleanup(sys.modules.pop, 'example_guard', None)
        importlib.invalidate_caches()
