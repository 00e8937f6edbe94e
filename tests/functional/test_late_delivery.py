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
"""A request queued while nova-compute was down, delivered after the
start-up recovery acted on it, runs at most once.

nova-api sets a task_state and casts the request; with nova-compute down
the message waits in the queue. recovery_table leaves such an instance
alone for ``[guardrails] queued_grace_seconds``, then decides it by the
table. A message delivered after that (a slow broker, a long outage of the
queue) must not run the operation again: ``start_instance`` has no
task_state check before ``_power_on`` (a second hard reboot of the running
guest on libvirt), ``pause_instance``, ``suspend_instance`` and
``rescue_instance`` act on the guest before their expected-task_state save
fails, leaving the guest paused, saved or in rescue while nova records it
active. Each test holds the cast across a restart, waits for the recovery,
delivers the message, and counts the driver's operations.
"""

import json

import fixtures
import nova.conf

from nova_guardrails.lab import harness
from nova_guardrails.lab import scenarios

DRIVER = scenarios.LIBVIRT_DRIVER
HOST = scenarios.HOST
CONF = nova.conf.CONF

#: operation -> (API action body, rpcapi method held, driver methods
#: counted, vm_state the server must be in first).
OPERATIONS = {
    'start': ({'os-start': None}, 'start_instance', ('power_on',),
              'stopped'),
    'stop': ({'os-stop': None}, 'stop_instance', ('power_off',), 'active'),
    'pause': ({'pause': None}, 'pause_instance', ('pause',), 'active'),
    'suspend': ({'suspend': None}, 'suspend_instance', ('suspend',),
                'active'),
    'rescue': ({'rescue': {}}, 'rescue_instance', ('rescue',), 'active'),
    'reboot': ({'reboot': {'type': 'SOFT'}}, 'reboot_instance',
               ('reboot',), 'active'),
}

#: vm_state -> the guest power state it stands for.
GUEST_OF = {'active': 'running', 'stopped': 'shutdown', 'paused': 'paused',
            'suspended': 'shutdown', 'rescued': 'running'}


class _LateDelivery(harness.GuardrailsTestBase):

    def hold_cast(self, method):
        """Hold compute casts of ``method``; returns a function that
        delivers them (the queue draining long after the restart).
        """
        from nova.compute import rpcapi
        held = []
        original = getattr(rpcapi.ComputeAPI, method)

        def hold(rpc_self, *args, **kwargs):
            held.append((rpc_self, args, kwargs))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.compute.rpcapi.ComputeAPI.%s' % method, hold))

        def deliver():
            self.assertEqual(1, len(held), 'the cast was not held')
            for rpc_self, args, kwargs in held:
                original(rpc_self, *args, **kwargs)
        return deliver

    def count(self, names):
        calls = []
        for name in names:
            self.spy(DRIVER, name, lambda *a, _n=name, **k: calls.append(_n))
        return calls

    def decisions(self, server):
        with open(CONF.guardrails.report_path) as f:
            report = json.load(f)
        return [d for d in report['decisions']
                if d['instance_uuid'] == server['id']]

    def queued_then_late(self, operation):
        body, method, counted, before = OPERATIONS[operation]
        server = scenarios.boot(self)
        if before == 'stopped':
            self.api.post_server_action(server['id'], {'os-stop': None})
            server = self._wait_for_state_change(server, 'SHUTOFF')
        deliver = self.hold_cast(method)
        calls = self.count(counted)
        self.api.post_server_action(server['id'], body)
        self.assertIsNotNone(self.server_states(server)[1])
        self.restart_compute_service(HOST)
        return server, deliver, calls


class GuardedLateDeliveryTest(_LateDelivery):
    NOVA_CONF = harness.GUARDED_NOVA_CONF + 'queued_grace_seconds = 1\n'

    def _run(self, operation):
        server, deliver, calls = self.queued_then_late(operation)
        # The grace period ends, the table decides.
        self.wait_until(lambda: self.server_states(server)[1] is None,
                        timeout=20)
        self.wait_until(lambda: len(self.decisions(server)) >= 2,
                        timeout=15)
        decided = self.decisions(server)[1]
        self.assertTrue(decided['reason'].startswith('still queued after'),
                        decided)
        done = list(calls)
        self.assertLessEqual(len(done), 1, done)
        # The message arrives late: handled (run or dropped).
        deliver()
        method = OPERATIONS[operation][1]
        self.wait_until(lambda: self.dropped(server) or self.handled(
            server, 'compute_' + method), timeout=15)
        self.assertEqual(done, calls, 'the late delivery ran again')
        vm_state, task_state, guest = self.server_states(server)
        self.assertIsNone(task_state)
        self.assertEqual(GUEST_OF[vm_state], guest,
                         'nova records %s, the guest is %s' % (vm_state,
                                                               guest))
        self.assertTrue(self.dropped(server))

    def dropped(self, server):
        return any(d['action'] == 'late_delivery_dropped'
                   for d in self.decisions(server))

    def handled(self, server, event):
        """The latest instance action has ``event`` finished (nova's
        instance action API).
        """
        actions = self.api.api_get(
            '/servers/%s/os-instance-actions' % server['id']
        ).body['instanceActions']
        latest = max(actions, key=lambda a: a['start_time'])
        detail = self.api.api_get('/servers/%s/os-instance-actions/%s' % (
            server['id'], latest['request_id'])).body['instanceAction']
        return any(e['event'] == event and e['finish_time']
                   for e in detail.get('events', ()))

    def test_start(self):
        self._run('start')

    def test_stop(self):
        self._run('stop')

    def test_pause(self):
        self._run('pause')

    def test_suspend(self):
        self._run('suspend')

    def test_rescue(self):
        self._run('rescue')

    def test_reboot(self):
        self._run('reboot')

    def test_delivery_before_the_grace_period_runs_once(self):
        """Delivered while the instance is still deferred: nova runs it,
        once, and the recovery leaves it to nova.
        """
        server, deliver, calls = self.queued_then_late('start')
        deliver()
        self._wait_for_state_change(server, 'ACTIVE')
        self.wait_until(lambda: len(self.decisions(server)) >= 2,
                        timeout=15)
        self.assertEqual(('queued', 'nova'),
                         (self.decisions(server)[1]['action'],
                          self.decisions(server)[1]['executed_by']))
        self.assertEqual(['power_on'], calls)
