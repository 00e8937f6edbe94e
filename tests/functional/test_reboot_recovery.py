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
"""Interrupted reboots on real nova 34 (nova bug 1072751).

The bug's own scenario (a soft reboot interrupted after the guest shut
down) is regressions/test_bug_1072751.py, on the base classes of this module.

Each test runs a crash scenario of nova_guardrails.lab.scenarios: the real
operation through nova's API, nova-compute killed (a BaseException) at the
crash point, then a restart of the compute service that keeps the fake
hypervisor's domains. Guarded runs load guardrails.GuardrailsDriver from
nova.conf text; nova-alone runs load libvirt.LibvirtDriver the same way.
"""

import json

import fixtures

from nova import context as nova_context
from nova import objects

import nova.conf
from nova_guardrails.lab import harness
from nova_guardrails.lab import scenarios

CONF = nova.conf.CONF


class _Base(harness.GuardrailsTestBase):

    def run_scenario(self, name):
        return scenarios.crash_and_restart(self, scenarios.BY_NAME[name])

    def assertCrashedAt(self, outcome, vm_state, task_state, guest):
        # The crash point was reached where the scenario says: otherwise
        # the test would prove nothing about recovery.
        self.assertEqual((vm_state, task_state),
                         outcome.at_crash[:2])
        self.assertEqual(guest, outcome.guest_at_crash)

    def assertActiveRunning(self, outcome):
        self.assertTrue(outcome.started, outcome.start_error)
        self.assertEqual(('active', None, 'running'), outcome.after)
        self.assertEqual('running', outcome.guest_after)


class _Guarded(_Base):
    NOVA_CONF = harness.GUARDED_NOVA_CONF

    def assertDecision(self, outcome, action, before, after=None,
                       result='done'):
        decision = outcome.decision
        self.assertIsNotNone(decision, 'no start-up report row')
        self.assertEqual('recovery_table', decision['guard'])
        self.assertEqual(action, decision['action'])
        self.assertEqual(result, decision['outcome'])
        self.assertEqual('guardrails', decision['executed_by'])
        self.assertEqual(dict(zip(('vm_state', 'task_state', 'power_state'),
                                  before)), decision['before'])
        if after:
            self.assertEqual(dict(zip(('vm_state', 'task_state',
                                       'power_state'), after)),
                             decision['after'])


class _NovaAlone(_Base):
    """What nova 34 does by itself."""

    NOVA_CONF = harness.NOVA_ALONE_CONF

    def setUp(self):
        super().setUp()
        self.assertFalse(hasattr(CONF, 'guardrails') and
                         'GuardrailsDriver' in CONF.compute_driver)


class GuardedRebootRecoveryTest(_Guarded):
    """The reboot rows; nova bug 1072751 itself: regressions/."""

    def test_soft_reboot_guest_running_no_second_reboot(self):
        outcome = self.run_scenario('soft_reboot_guest_running')
        self.assertCrashedAt(outcome, 'active', 'reboot_started', 'running')
        self.assertActiveRunning(outcome)
        self.assertEqual([], outcome.reboots)
        self.assertDecision(outcome, 'clear_active',
                            ('active', 'reboot_started', 'running'))

    def test_hard_reboot_crash_rebooting_hard_guest_off(self):
        outcome = self.run_scenario('hard_reboot_rebooting_hard')
        self.assertCrashedAt(outcome, 'stopped', 'rebooting_hard',
                             'shutdown')
        self.assertActiveRunning(outcome)
        self.assertEqual(['HARD'], outcome.reboots)
        self.assertDecision(outcome, 'reboot_hard',
                            ('stopped', 'rebooting_hard', 'shutdown'))

    def test_hard_reboot_crash_reboot_pending_hard_guest_off(self):
        outcome = self.run_scenario('hard_reboot_pending_hard')
        self.assertCrashedAt(outcome, 'stopped', 'reboot_pending_hard',
                             'shutdown')
        self.assertActiveRunning(outcome)
        self.assertEqual(['HARD'], outcome.reboots)
        self.assertDecision(outcome, 'reboot_hard',
                            ('stopped', 'reboot_pending_hard', 'shutdown'))

    def test_hard_reboot_crash_reboot_started_hard_guest_off(self):
        outcome = self.run_scenario('hard_reboot_started_hard')
        self.assertCrashedAt(outcome, 'active', 'reboot_started_hard',
                             'shutdown')
        self.assertActiveRunning(outcome)
        self.assertEqual(['HARD'], outcome.reboots)
        self.assertDecision(outcome, 'reboot_hard',
                            ('active', 'reboot_started_hard', 'shutdown'))

    def test_hard_reboot_of_error_instance_crash(self):
        outcome = self.run_scenario('hard_reboot_error_instance')
        self.assertCrashedAt(outcome, 'error', 'reboot_started_hard',
                             'shutdown')
        self.assertActiveRunning(outcome)
        self.assertEqual(['HARD'], outcome.reboots)
        self.assertDecision(outcome, 'reboot_hard',
                            ('error', 'reboot_started_hard', 'shutdown'))

    def test_failing_recovery_sets_error_and_compute_starts(self):
        outcome = self.run_scenario('startup_reboot_fails')
        self.assertCrashedAt(outcome, 'active', 'reboot_started', 'shutdown')
        self.assertTrue(outcome.started, outcome.start_error)
        self.assertEqual(('error', None), outcome.after[:2])
        self.assertDecision(outcome, 'reboot_hard',
                            ('active', 'reboot_started', 'shutdown'),
                            result='failed')
        self.assertIn('qemu died at start-up',
                      outcome.decision['error'])
        # The compute service is up and serves the host.
        services = self.admin_api.get_services(binary='nova-compute',
                                               host=scenarios.HOST)
        self.assertEqual('up', services[0]['state'])

    def test_soft_reboot_pending_guest_running_reruns_soft(self):
        outcome = self.run_scenario('soft_reboot_pending_guest_running')
        self.assertCrashedAt(outcome, 'active', 'reboot_pending', 'running')
        self.assertActiveRunning(outcome)
        self.assertEqual(['SOFT'], outcome.reboots)
        self.assertDecision(outcome, 'reboot_soft',
                            ('active', 'reboot_pending', 'running'))

    def test_row_executed_by_nova(self):
        outcome = self.run_scenario('stop_before_driver')
        self.assertCrashedAt(outcome, 'active', 'powering-off', 'running')
        self.assertEqual(('stopped', None), outcome.after[:2])
        self.assertEqual('shutdown', outcome.guest_after)
        decision = outcome.decision
        self.assertEqual(('rerun_stop', 'nova', 'done'),
                         (decision['action'], decision['executed_by'],
                          decision['outcome']))
        self.assertEqual({'vm_state': 'stopped', 'task_state': None,
                          'power_state': 'shutdown'}, decision['after'])

    def test_task_state_nova_leaves_stuck(self):
        outcome = self.run_scenario('suspend_before_driver')
        self.assertCrashedAt(outcome, 'active', 'suspending', 'running')
        # nova 34 leaves it stuck (see the nova-alone test); the guard
        # clears it: the suspend never reached the guest.
        self.assertActiveRunning(outcome)
        self.assertEqual(('clear_active', 'guardrails', 'done'),
                         (outcome.decision['action'],
                          outcome.decision['executed_by'],
                          outcome.decision['outcome']))

    def test_preempted_by_a_request_during_start_up(self):
        """A delete reaches the instance while the guard decides: the
        guard's save fails on the expected task_state; it changes nothing
        more and does not reboot.
        """
        server = scenarios.soft_reboot_guest_off(self)

        def delete_request_lands(driver_self, instance, *args, **kwargs):
            ctxt = nova_context.get_admin_context()
            other = objects.Instance.get_by_uuid(ctxt, instance.uuid)
            if other.task_state == 'reboot_started':
                other.task_state = 'deleting'
                other.save()
        self.spy(scenarios.LIBVIRT_DRIVER, 'get_info', delete_request_lands)
        reboots = []
        self.spy(scenarios.LIBVIRT_DRIVER, 'reboot',
                 lambda *a, **kw: reboots.append(a))
        self.restart_compute_service(scenarios.HOST)
        self.assertEqual([], reboots)
        self.assertEqual('deleting', self.instance(server).task_state)
        decision = scenarios.decision(server)
        self.assertEqual(('reboot_hard', 'preempted'),
                         (decision['action'], decision['outcome']))
        self.assertEqual('deleting', decision['after']['task_state'])

    def test_power_state_unreadable_left_to_nova(self):
        server = scenarios.soft_reboot_guest_off(self)
        from nova.tests.fixtures import libvirt as fakelibvirt

        def broken(*args, **kwargs):
            raise fakelibvirt.make_libvirtError(
                fakelibvirt.libvirtError, 'hypervisor hiccup',
                error_code=fakelibvirt.VIR_ERR_INTERNAL_ERROR)
        self.useFixture(fixtures.MonkeyPatch(
            scenarios.LIBVIRT_DRIVER + '.get_info', broken))
        # nova's own _init_instance reads the power state too and fails;
        # the failure is contained to this instance and compute starts.
        self.restart_compute_service(scenarios.HOST)
        decision = scenarios.decision(server)
        self.assertEqual(('nova', 'failed'),
                         (decision['action'], decision['outcome']))
        self.assertIn('hypervisor hiccup', decision['error'])
        self.assertEqual('reboot_started', self.instance(server).task_state)

    def test_report_document(self):
        """The start-up report: default path under state_path, one row per
        instance with a task_state, none for a stable instance.
        """
        stable = scenarios.boot(self)
        crashed_server = self._create_server(networks='none')
        crashed = self.crash_at(scenarios.DOMAIN, 'shutdown', when='after')
        self.api.post_server_action(crashed_server['id'],
                                    {'reboot': {'type': 'SOFT'}})
        self.wait_for_crash(crashed)
        self.restart_compute_service(scenarios.HOST)
        path = CONF.guardrails.report_path
        self.assertEqual(
            '%s/guardrails/startup-report.json' % self.state_path, path)
        with open(path) as f:
            report = json.load(f)
        self.assertEqual('completed', report['status'])
        self.assertEqual(scenarios.HOST, report['host'])
        self.assertEqual(['recovery_table', 'host_identity', 'revert_vif',
                          'rbd_root_disk'],
                         report['guards'])
        self.assertEqual([crashed_server['id']],
                         [d['instance_uuid'] for d in report['decisions']])
        self.assertNotIn(stable['id'], json.dumps(report))


class NovaAloneRebootRecoveryTest(_NovaAlone):
    """The same crashes with nova alone: what nova 34 does by itself."""

    def test_soft_reboot_guest_running_no_second_reboot(self):
        outcome = self.run_scenario('soft_reboot_guest_running')
        self.assertActiveRunning(outcome)
        self.assertEqual([], outcome.reboots)

    def test_hard_reboot_crash_reboot_started_hard_guest_off(self):
        outcome = self.run_scenario('hard_reboot_started_hard')
        self.assertActiveRunning(outcome)
        self.assertEqual(['HARD'], outcome.reboots)

    def test_hard_reboot_of_error_instance_crash_stays_stuck(self):
        outcome = self.run_scenario('hard_reboot_error_instance')
        self.assertCrashedAt(outcome, 'error', 'reboot_started_hard',
                             'shutdown')
        self.assertTrue(outcome.started)
        self.assertEqual(('error', 'reboot_started_hard'),
                         outcome.after[:2])
        self.assertEqual('shutdown', outcome.guest_after)
        self.assertEqual([], outcome.reboots)
        self.assertEqual('stuck', outcome.verdict)

    def test_suspend_interrupted_stays_stuck(self):
        outcome = self.run_scenario('suspend_before_driver')
        self.assertCrashedAt(outcome, 'active', 'suspending', 'running')
        self.assertEqual(('active', 'suspending'), outcome.after[:2])
        self.assertEqual('stuck', outcome.verdict)

    def test_failing_recovery_stops_nova_compute(self):
        outcome = self.run_scenario('startup_reboot_fails')
        self.assertFalse(outcome.started)
        self.assertIn('qemu died at start-up', outcome.start_error)
        self.assertEqual('compute down', outcome.verdict)
