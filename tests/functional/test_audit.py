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
"""nova-guardrails audit on real nova 34: read-only (no statement of its
thread writes to the cell database), and what start-up does.
"""

import contextlib
import json
import threading

import fixtures

import sqlalchemy

from nova import context as nova_context
from nova.db.main import api as main_db_api

from nova_guardrails import audit
from nova_guardrails.lab import harness
from nova_guardrails.lab import scenarios


@contextlib.contextmanager
def writes_of_this_thread():
    """Yield a list that collects every SQL statement this thread runs on
    the cell database other than a read (nova's own services write from
    their threads meanwhile: heartbeats, periodic tasks).
    """
    engine = main_db_api.get_engine()
    me = threading.get_ident()
    writes = []

    def record(conn, cursor, statement, parameters, context, executemany):
        verb = statement.lstrip().split(None, 1)[0].upper()
        if threading.get_ident() == me and verb not in (
                'SELECT', 'PRAGMA', 'SAVEPOINT', 'RELEASE', 'ROLLBACK',
                'BEGIN', 'COMMIT'):
            writes.append(statement)
    sqlalchemy.event.listen(engine, 'before_cursor_execute', record)
    try:
        yield writes
    finally:
        sqlalchemy.event.remove(engine, 'before_cursor_execute', record)


class AuditTest(harness.GuardrailsTestBase):

    def test_read_only_and_what_start_up_would_do(self):
        stable = scenarios.boot(self)
        server = self._create_server(networks='none')
        crashed = self.crash_at(scenarios.DOMAIN, 'shutdown')
        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'SOFT'}})
        self.wait_for_crash(crashed)
        compute = self.computes[scenarios.HOST]
        ctxt = nova_context.get_admin_context()

        def power_of(instance):
            return compute.driver.get_info(instance, use_cache=False).state
        with writes_of_this_thread() as writes:
            rows = audit.rows(ctxt, scenarios.HOST, power_of)
            blind = audit.rows(ctxt, scenarios.HOST)
        self.assertEqual([], writes)
        # The listener sees this thread's writes to the cell database.
        with writes_of_this_thread() as writes:
            instance = self.instance(stable)
            instance.display_name = 'renamed'
            instance.save()
        self.assertNotEqual([], writes)
        # Only the interrupted instance; the stable one has no task_state.
        [row] = rows
        self.assertEqual(
            (server['id'], 'active', 'reboot_started', 'shutdown',
             'reboot_hard', 'guardrails'),
            tuple(row[c] for c in audit.COLUMNS[:6]))
        self.assertNotIn(stable['id'], audit.render(rows, 'table'))
        # Without the hypervisor the action depends on the power state.
        [row] = blind
        self.assertEqual(('unknown', 'depends on the power state'),
                         (row['power_state'], row['action']))
        self.assertIn('clear_active, reboot_hard', row['reason'])
        self.assertEqual(rows, json.loads(audit.render(rows, 'json')))
        # And start-up does what the audit said.
        self.restart_compute_service(scenarios.HOST)
        self.assertEqual('reboot_hard',
                         scenarios.decision(server)['action'])

    def test_queued_request_and_overrides(self):
        """A reboot nova-api accepted but no compute started is reported
        ``queued``; an override changes the action the audit reports.
        """
        from nova_guardrails import recovery
        server = scenarios.boot(self)
        self.useFixture(fixtures.MonkeyPatch(
            'nova.compute.rpcapi.ComputeAPI.reboot_instance',
            lambda *args, **kwargs: None))
        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'SOFT'}})
        ctxt = nova_context.get_admin_context()
        with writes_of_this_thread() as writes:
            [row] = audit.rows(ctxt, scenarios.HOST, grace=120)
        self.assertEqual(('rebooting', 'queued'),
                         (row['task_state'], row['action']))
        self.assertIn('compute1 did not start it', row['reason'])
        index = recovery.build_index(recovery.effective_rules(
            {'rebooting': 'error'}))
        with writes_of_this_thread() as more_writes:
            [row] = audit.rows(ctxt, scenarios.HOST, index=index, grace=0)
        self.assertEqual(('error', 'guardrails'),
                         (row['action'], row['by']))
        self.assertIn('recovery_overrides', row['reason'])
        self.assertEqual([], writes + more_writes)

    def test_reads_only_instances_with_a_task_state(self):
        """The audit reads what start-up would look at (nova's
        get_by_host): a soft-deleted instance being restored and a hidden
        one are reported, a deleted one and one of another host are not.
        """
        from nova import objects
        ctxt = nova_context.get_admin_context()
        restoring = scenarios.boot(self)
        hidden, deleted, elsewhere = (self._create_server(networks='none')
                                      for _ in range(3))
        changes = {restoring['id']: {'vm_state': 'soft-delete',
                                     'task_state': 'restoring'},
                   # The source copy of a cross-cell resize.
                   hidden['id']: {'hidden': True,
                                  'task_state': 'resize_migrated'},
                   deleted['id']: {'task_state': 'deleting'},
                   elsewhere['id']: {'task_state': 'rebooting',
                                     'host': 'compute2'}}
        for uuid, values in changes.items():
            instance = objects.Instance.get_by_uuid(ctxt, uuid)
            for field, value in values.items():
                setattr(instance, field, value)
            instance.save()
        objects.Instance.get_by_uuid(ctxt, deleted['id']).destroy()
        rows = audit.rows(ctxt, scenarios.HOST)
        self.assertEqual([(restoring['id'], 'soft-delete', 'restoring'),
                          (hidden['id'], 'active', 'resize_migrated')],
                         [(r['instance'], r['vm_state'], r['task_state'])
                          for r in rows])
        # Start-up leaves the hidden copy to nova, and the audit says so.
        self.assertEqual(('nova', 'nova'),
                         (rows[1]['action'], rows[1]['by']))
