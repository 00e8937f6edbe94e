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
"""The task_states nova 34 leaves stuck (blueprint "recover from stuck
states"), on real nova 34.

Each test runs the real operation through nova's API, kills nova-compute
(a BaseException) at a crash point inside it, restarts the compute service
keeping the fake hypervisor's domains, and asserts where the server ends:
guarded (recovery_table) it is stable and consistent with its guest; nova
alone it stays stuck in the task_state.
"""

import fixtures
import nova.conf
from nova import version as nova_version

from nova_guardrails.lab import harness
from nova_guardrails.lab import scenarios

DOMAIN = scenarios.DOMAIN
DRIVER = scenarios.LIBVIRT_DRIVER
HOST = scenarios.HOST
CONF = nova.conf.CONF
#: nova 29 (2024.1) leaves rebooting of a running guest alone at start-up.
NOVA_MAJOR = int(nova_version.version_string().split('.')[0])


class _Base(harness.GuardrailsTestBase):

    def interrupt(self, server, crashed, action):
        """Ask for ``action``, wait for the crash, restart compute1; returns
        (state at the crash, state after, guest after, decision).
        """
        scenarios.interrupt(self, server, crashed, action)
        at_crash = self.server_states(server)
        conn = self.computes[HOST].driver._host.get_connection()
        self.restart_compute_service(HOST)
        after = self.server_states(server)
        return (at_crash, after, self.guest_power_state_on(conn, server),
                scenarios.decision(server))

    def suspended_server(self):
        server = scenarios.boot(self)
        self.api.post_server_action(server['id'], {'suspend': None})
        return self._wait_for_state_change(server, 'SUSPENDED')


class GuardedStatesTest(_Base):
    NOVA_CONF = harness.GUARDED_NOVA_CONF

    def test_suspending_guest_saved(self):
        """The driver saved the guest, nova-compute died before recording
        it: the suspend is recorded (vm_state suspended).
        """
        server = scenarios.boot(self)
        at_crash, after, guest, decision = self.interrupt(
            server, self.crash_at(DRIVER, 'suspend', when='after'),
            {'suspend': None})
        self.assertEqual(('active', 'suspending', 'running'), at_crash)
        self.assertEqual(('suspended', None), after[:2])
        self.assertEqual('shutdown', guest)
        self.assertGuardrailsDecision(decision, 'finish_suspend')
        # The recovered server resumes.
        self.api.post_server_action(server['id'], {'resume': None})
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('running', self.guest_power_state(HOST, server))

    def test_resuming_guest_still_saved(self):
        server = self.suspended_server()
        at_crash, after, guest, decision = self.interrupt(
            server, self.crash_at(DRIVER, 'resume', when='before'),
            {'resume': None})
        self.assertEqual(('suspended', 'resuming'), at_crash[:2])
        self.assertEqual(('suspended', None), after[:2])
        self.assertEqual('shutdown', guest)
        self.assertGuardrailsDecision(decision, 'clear')

    def test_resuming_guest_running(self):
        server = self.suspended_server()
        at_crash, after, guest, decision = self.interrupt(
            server, self.crash_at(DRIVER, 'resume', when='after'),
            {'resume': None})
        self.assertEqual(('suspended', 'resuming'), at_crash[:2])
        self.assertEqual(('active', None), after[:2])
        self.assertEqual('running', guest)
        self.assertGuardrailsDecision(decision, 'clear_active')


class OverrideTest(_Base):
    NOVA_CONF = (harness.GUARDED_NOVA_CONF +
                 'recovery_overrides = suspending:error\n')

    def test_operator_override_wins(self):
        server = scenarios.boot(self)
        _, after, guest, decision = self.interrupt(
            server, self.crash_at(DRIVER, 'suspend', when='after'),
            {'suspend': None})
        self.assertEqual(('error', None), after[:2])
        self.assertEqual('shutdown', guest)
        self.assertEqual('error', decision['action'])
        self.assertIn('recovery_overrides = suspending:error',
                      decision['reason'])


class NovaAloneStatesTest(_Base):
    """The same crashes with nova alone: the instance stays stuck."""

    NOVA_CONF = harness.NOVA_ALONE_CONF

    def test_suspending_guest_saved(self):
        server = scenarios.boot(self)
        _, after, guest, _ = self.interrupt(
            server, self.crash_at(DRIVER, 'suspend', when='after'),
            {'suspend': None})
        self.assertEqual(('active', 'suspending'), after[:2])
        self.assertEqual('shutdown', guest)

    def test_resuming_guest_running(self):
        server = self.suspended_server()
        _, after, guest, _ = self.interrupt(
            server, self.crash_at(DRIVER, 'resume', when='after'),
            {'resume': None})
        self.assertEqual(('suspended', 'resuming'), after[:2])
        self.assertEqual('running', guest)


class _Queued(_Base):
    """A reboot request accepted by nova-api while nova-compute was down:
    its cast is held (the message still in the queue) across the restart.
    """

    def hold_reboot_cast(self):
        """Hold compute casts of reboot_instance; returns a function that
        delivers them (the queue draining once compute is back).
        """
        from nova.compute import rpcapi
        held = []
        original = rpcapi.ComputeAPI.reboot_instance

        def hold(rpc_self, *args, **kwargs):
            held.append((rpc_self, args, kwargs))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.compute.rpcapi.ComputeAPI.reboot_instance', hold))

        def deliver():
            for rpc_self, args, kwargs in held:
                original(rpc_self, *args, **kwargs)
        return deliver

    def queued_reboot(self):
        server = scenarios.boot(self)
        deliver = self.hold_reboot_cast()
        self.reboots = []
        self.spy(DRIVER, 'reboot', lambda *a, **kw: self.reboots.append(a))
        self.api.post_server_action(server['id'], {'reboot': {'type':
                                                              'SOFT'}})
        self.assertEqual(('active', 'rebooting'),
                         self.server_states(server)[:2])
        self.restart_compute_service(HOST)
        return server, deliver

    def decisions(self, server):
        import json
        with open(CONF.guardrails.report_path) as f:
            report = json.load(f)
        return [d for d in report['decisions']
                if d['instance_uuid'] == server['id']]


class GuardedQueuedTest(_Queued):
    NOVA_CONF = harness.GUARDED_NOVA_CONF + 'queued_grace_seconds = 1\n'

    def test_queued_request_runs_once(self):
        server, deliver = self.queued_reboot()
        # Start-up left it alone: still rebooting, no reboot yet.
        self.assertEqual(('active', 'rebooting'),
                         self.server_states(server)[:2])
        self.assertEqual([], self.reboots)
        [row] = self.decisions(server)
        self.assertEqual('queued', row['action'])
        self.assertIn('compute1 did not start it', row['reason'])
        # The queue drains: the user's reboot runs, once.
        deliver()
        self._wait_for_state_change(server, 'ACTIVE')
        self.wait_until(lambda: self.server_states(server)[1] is None)
        self.assertEqual(1, len(self.reboots))
        # After the grace period the guard sees that it moved on.
        self.wait_until(lambda: len(self.decisions(server)) == 2, timeout=15)
        self.assertEqual(('queued', 'nova'),
                         (self.decisions(server)[1]['action'],
                          self.decisions(server)[1]['executed_by']))
        self.assertEqual(1, len(self.reboots))

    def test_lost_request_is_decided_after_the_grace_period(self):
        server, _ = self.queued_reboot()
        self.assertEqual('rebooting', self.server_states(server)[1])
        # Never delivered: after 1 s the table applies (guest running ->
        # clear_active, no reboot).
        self.wait_until(lambda: self.server_states(server)[1] is None,
                        timeout=15)
        self.assertEqual(('active', None, 'running'),
                         self.server_states(server))
        self.wait_until(lambda: len(self.decisions(server)) == 2, timeout=15)
        row = self.decisions(server)[1]
        self.assertEqual(('clear_active', 'guardrails', 'done'),
                         (row['action'], row['executed_by'],
                          row['outcome']))
        self.assertTrue(row['reason'].startswith('still queued after 1s'))
        self.assertEqual([], self.reboots)


class NovaAloneQueuedTest(_Queued):
    NOVA_CONF = harness.NOVA_ALONE_CONF

    def test_queued_request_is_lost(self):
        """nova alone clears the task_state of the queued reboot at
        start-up; when the request arrives it fails on its expected
        task_state: the user's reboot never happens.
        """
        server, deliver = self.queued_reboot()
        if NOVA_MAJOR < 30:
            # nova 29's _init_instance neither clears nor retries
            # rebooting for a running guest: the instance stays in it
            # (stuck if the request never comes) and the queued request,
            # delivered, runs.
            self.assertEqual(('active', 'rebooting'),
                             self.server_states(server)[:2])
            deliver()
            self.wait_until(lambda: self.server_states(server)[1] is None,
                            timeout=15)
            self.assertEqual(1, len(self.reboots))
            return
        self.assertEqual(('active', None), self.server_states(server)[:2])
        deliver()
        self._wait_for_action_fail_completion(server, 'reboot',
                                              'compute_reboot_instance')
        self.assertEqual([], self.reboots)
