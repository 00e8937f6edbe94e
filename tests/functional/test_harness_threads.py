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
"""The in-process services run as greenthreads of one native thread, as in
nova's own functional tests: eventlet's monkey patching has to come before
nova imports oslo.db (nova bug 1773102's family).

Otherwise oslo.db's per-thread transaction state (``_TransactionContextTLocal``
is a ``threading.local``) is one native slot that every greenthread shares,
and two greenthreads using one RequestContext, e.g. init_host's instances in
a guard's deferred greenthread while init_host reads on, see each other's
transactions: "Can't upgrade a READER transaction to a WRITER
mid-transaction", or a session closed under the other's feet. A guard's
action then fails in the test where it would not on a compute node.
"""

# Deliberately first, as a test module usually imports: nova before the
# harness.
from nova import context as nova_context  # noqa: I100
from nova.db.main import api as main_db_api

import threading

from nova_guardrails.lab import harness


class TransactionStatePerGreenthreadTest(harness.GuardrailsTestBase):

    def test_a_reader_in_one_greenthread_is_not_the_writers(self):
        ctxt = nova_context.get_admin_context()
        inside, release = threading.Event(), threading.Event()

        def reader():
            with main_db_api.context_manager.reader.using(ctxt):
                inside.set()
                release.wait(10)

        thread = threading.Thread(target=reader)
        thread.start()
        self.assertTrue(inside.wait(10))
        try:
            with main_db_api.context_manager.writer.using(ctxt):
                pass
        finally:
            release.set()
            thread.join(10)
