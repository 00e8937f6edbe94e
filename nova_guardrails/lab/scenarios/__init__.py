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
"""Crash scenarios: a server, an operation, nova-compute dying mid-way.

Each :class:`Scenario` sets up servers on a
:class:`~nova_guardrails.lab.harness.GuardrailsTestBase`, reproduces one
upstream nova bug's situation through the compute API (for most, killing
nova-compute at a crash point:
:class:`~nova_guardrails.lab.harness.ComputeCrash`) and returns what nova
made of it. The functional tests and ``nova-guardrails lab`` run the same
scenarios, nova alone and guarded. One module per guard:

* :mod:`~nova_guardrails.lab.scenarios.recovery_table`: nova-compute killed
  mid-operation, restarted keeping the hypervisor (nova bug 1072751, the
  blueprint "recover from stuck states"): :func:`crash_and_restart`,
  :class:`Outcome`;
* :mod:`~nova_guardrails.lab.scenarios.host_identity`: an HA standby over
  another host's hypervisor, an evacuation whose destination died (nova
  bug 1419785): :class:`HostOutcome`;
* :mod:`~nova_guardrails.lab.scenarios.revert_vif`: a resize revert whose
  port stays bound elsewhere (nova bug 1450624): :class:`RevertOutcome`;
* :mod:`~nova_guardrails.lab.scenarios.rbd_root_disk`: an evacuation whose
  spawn fails, root disk on Ceph (nova bug 1419785's evacuation case):
  :class:`DiskOutcome`;
* :mod:`~nova_guardrails.lab.scenarios.base`: :class:`Scenario`, the
  guards' report (:func:`decision`, :func:`decisions`), the disk copy
  stub (:func:`fake_disk_migration`).

This package keeps the registry: :data:`SCENARIOS`, the lab's scenarios in
the lab table's order (recovery_table's, host_identity's, revert_vif's,
rbd_root_disk's); :data:`MORE_SCENARIOS`, those only the functional tests
run; :data:`BY_NAME`, every scenario by name (``--scenario``). The names of
the modules are available here too (``scenarios.boot``,
``scenarios.HOST``, ``scenarios.force_down``...).
"""

from nova_guardrails.lab.scenarios import base
from nova_guardrails.lab.scenarios import host_identity
from nova_guardrails.lab.scenarios import rbd_root_disk
from nova_guardrails.lab.scenarios import recovery_table
from nova_guardrails.lab.scenarios import revert_vif

# Shared: the Scenario record, patch targets, the guards' report.
Scenario = base.Scenario
DOMAIN = base.DOMAIN
CONNECTION = base.CONNECTION
LIBVIRT_DRIVER = base.LIBVIRT_DRIVER
CONF = base.CONF
GUEST_OF_VM_STATE = base.GUEST_OF_VM_STATE
decision = base.decision
decisions = base.decisions
fake_disk_migration = base.fake_disk_migration

# recovery_table (nova bug 1072751, blueprint "recover from stuck states").
HOST = recovery_table.HOST
Outcome = recovery_table.Outcome
boot = recovery_table.boot
interrupt = recovery_table.interrupt
crash_and_restart = recovery_table.crash_and_restart
soft_reboot_guest_off = recovery_table.soft_reboot_guest_off
soft_reboot_guest_running = recovery_table.soft_reboot_guest_running
hard_reboot_rebooting_hard = recovery_table.hard_reboot_rebooting_hard
hard_reboot_pending_hard = recovery_table.hard_reboot_pending_hard
hard_reboot_started_hard = recovery_table.hard_reboot_started_hard
hard_reboot_error_instance = recovery_table.hard_reboot_error_instance
soft_reboot_pending_guest_running = \
    recovery_table.soft_reboot_pending_guest_running
stop_before_driver = recovery_table.stop_before_driver
suspend_before_driver = recovery_table.suspend_before_driver
suspend_guest_saved = recovery_table.suspend_guest_saved
shelve_offload_interrupted = recovery_table.shelve_offload_interrupted

# host_identity (nova bug 1419785).
A, B, C = host_identity.A, host_identity.B, host_identity.C
HostOutcome = host_identity.HostOutcome
boot_on = host_identity.boot_on
standby_history = host_identity.standby_history
force_down = host_identity.force_down
evacuate_while_down = host_identity.evacuate_while_down
run_standby = host_identity.run_standby
run_evacuation = host_identity.run_evacuation

# revert_vif (nova bug 1450624).
RevertOutcome = revert_vif.RevertOutcome
server_with_port = revert_vif.server_with_port
resized_with_port = revert_vif.resized_with_port
make_revert_race = revert_vif.make_revert_race
revert = revert_vif.revert
run_revert_race = revert_vif.run_revert_race

# rbd_root_disk (nova bug 1419785's evacuation case).
DiskOutcome = rbd_root_disk.DiskOutcome
ceph_cluster = rbd_root_disk.ceph_cluster
use_rbd = rbd_root_disk.use_rbd
evacuate_to_failing_host = rbd_root_disk.evacuate_to_failing_host
run_rbd_evacuation = rbd_root_disk.run_rbd_evacuation

# The registry.
#: Scenarios the functional tests run besides the lab's.
MORE_SCENARIOS = recovery_table.MORE_SCENARIOS
HOST_SCENARIOS = host_identity.SCENARIOS
REVERT_SCENARIOS = revert_vif.SCENARIOS
RBD_SCENARIOS = rbd_root_disk.SCENARIOS
#: The lab's scenarios, in the order of its table.
SCENARIOS = (recovery_table.SCENARIOS + HOST_SCENARIOS + REVERT_SCENARIOS +
             RBD_SCENARIOS)
#: Every scenario by name: the lab's recovery_table scenarios, the
#: functional tests' others, then the other guards'.
BY_NAME = {s.name: s for s in recovery_table.SCENARIOS + MORE_SCENARIOS +
           HOST_SCENARIOS + REVERT_SCENARIOS + RBD_SCENARIOS}
