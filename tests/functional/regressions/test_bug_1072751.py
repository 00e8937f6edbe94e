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
"""Regression test for nova bug 1072751: an interrupted soft reboot.

https://bugs.launchpad.net/nova/+bug/1072751

A soft reboot shuts the guest down, then starts it again. In the field,
nova-compute died between the two: the guest was shut off and the instance
stayed in task_state ``reboot_started`` (``rebooting``), which no API call
could move, because ``ComputeManager._reboot_instance`` saves with an
expected task_state among the hard reboot states. nova's fix (NOTE(mikal) in
``ComputeManager._init_instance``) turns such a reboot into a HARD one at
start-up and rewrites the task_state first.

Here nova-compute is killed (``ComputeCrash``, a BaseException) right after
fakelibvirt's ``Domain.shutdown``, then restarted keeping the hypervisor's
domains. nova alone carries that fix: the test pins that it still recovers
the server with a HARD reboot. Guarded, the recovery_table guard decides
first: its row for ``reboot_started`` with the guest shut off is
``reboot_hard``, which rewrites the task_state to ``reboot_pending_hard``
explicitly before ``ComputeManager.reboot_instance`` (HARD), and records the
decision in the start-up report and one log line.
"""

from functional import test_reboot_recovery


class GuardedRebootRecoveryTest(test_reboot_recovery._Guarded):

    def test_bug_1072751(self):
        """Soft reboot, crash after the guest shut down -> HARD reboot."""
        outcome = self.run_scenario('soft_reboot_guest_off')
        self.assertCrashedAt(outcome, 'active', 'reboot_started', 'shutdown')
        self.assertActiveRunning(outcome)
        self.assertEqual(['HARD'], outcome.reboots)
        self.assertDecision(outcome, 'reboot_hard',
                            ('active', 'reboot_started', 'shutdown'),
                            ('active', None, 'running'))
        # One log line for the decision, with the instance and both states.
        line = [entry for entry in self.stdlog.logger.output.splitlines()
                if 'guardrails recovery_table: instance' in entry]
        self.assertEqual(1, len(line), line)
        for text in (outcome.decision['instance_uuid'],
                     'task_state=reboot_started power_state=shutdown',
                     'action reboot_hard',
                     'after [vm_state=active task_state=None '
                     'power_state=running]'):
            self.assertIn(text, line[0])


class NovaAloneRebootRecoveryTest(test_reboot_recovery._NovaAlone):

    def test_bug_1072751(self):
        # nova has carried the fix for bug 1072751 since 2015: alone it
        # also recovers that interrupted soft reboot with a HARD reboot.
        outcome = self.run_scenario('soft_reboot_guest_off')
        self.assertCrashedAt(outcome, 'active', 'reboot_started', 'shutdown')
        self.assertActiveRunning(outcome)
        self.assertEqual(['HARD'], outcome.reboots)
