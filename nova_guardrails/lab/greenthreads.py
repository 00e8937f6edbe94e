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
"""eventlet's monkey patching for the in-process nova, applied first.

Import this module before anything imports nova's other modules (the lab
harness and the test packages do). The in-process services are greenthreads
of one native thread, as in nova's own functional tests, and eventlet has
to patch ``threading`` before nova imports oslo.db: oslo.db keeps each
request context's transaction in a ``threading.local`` subclass
(``enginefacade._TransactionContextTLocal``) created when oslo.db is
imported. Created before the patching, it is one native slot that every
greenthread shares, and two greenthreads using one context (init_host
reading on while a guard's deferred greenthread saves one of its instances)
fail with "Can't upgrade a READER transaction to a WRITER mid-transaction"
or lose each other's session. A compute node does not see this: nova-compute
patches first and has no database.

How each release patches, through nova's own ``nova.monkey_patch``:

* nova 29 to 31: importing the module patches (``nova.tests.functional``'s
  package imports it);
* nova 32 and later: ``nova.monkey_patch.patch()``, which reads
  ``OS_NOVA_DISABLE_EVENTLET_PATCHING`` (and from nova 33 the
  ``concurrency_backend`` option) and also selects oslo.service's backend;
  nova's test packages call it. It does nothing when already patched.

testtools is imported before: it annotates with ``queue.Queue[...]``, which
eventlet's patched Queue does not support (under nova's own test runner
testtools is loaded first too).

Checked by ``tests/functional/test_harness_threads.py`` on every release.
"""

import testtools  # noqa: F401  (before eventlet; see above)

from nova import monkey_patch  # noqa: I100

if hasattr(monkey_patch, 'patch'):
    monkey_patch.patch()
