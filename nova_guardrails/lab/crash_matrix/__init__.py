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
"""The crash matrix: every lifecycle operation crashed at every step.

For each :class:`Operation` (boot, reboots, stop/start, pause, suspend,
rescue, snapshot, backup, rebuild, resize, migrations, evacuation, shelve,
delete, soft delete, restore, set admin password) the matrix

1. runs the operation once on real nova (the functional fixtures, libvirt
   driver over fakelibvirt) and *traces* its crash points: every task_state
   transition a nova-compute saves (:data:`TASK_STATE`), and every
   hypervisor side effect (:data:`HYPERVISOR`: a fakelibvirt call that
   defines, starts, stops, saves or removes a guest), each with the host it
   happened on and its occurrence number;
2. for each crash point, runs the operation again from scratch and kills the
   nova-compute of that host right after it (a
   :class:`~nova_guardrails.lab.harness.ComputeCrash`, a BaseException that
   nova's ``except Exception`` handlers do not catch, as with kill -9);
3. restarts that nova-compute keeping the hypervisor state, lets the system
   settle (the queued grace period included), and checks the invariants of
   :func:`evaluate`.

Each cell (operation x crash point) is ``recovered``, ``error`` (stable:
vm_state error, task_state None; an operator's hard reboot or rebuild
applies), ``stuck`` or ``lost`` (with the invariant that failed); the same
matrix runs with nova alone and with nova-guardrails. ``nova-guardrails
crash-matrix`` writes ``crash-matrix.md`` and a JSON file.

Modules:

* :mod:`~nova_guardrails.lab.crash_matrix.tracer`: crash points, how they
  are traced and how nova-compute is killed at one;
* :mod:`~nova_guardrails.lab.crash_matrix.operations`: the operations and
  their set-up;
* :mod:`~nova_guardrails.lab.crash_matrix.invariants`: the state read
  after the restart and the verdicts (recovered, error, stuck, lost);
* :mod:`~nova_guardrails.lab.crash_matrix.cells`: running the trace and
  the cells (crash, restart, settle, late delivery);
* :mod:`~nova_guardrails.lab.crash_matrix.report`: the markdown report and
  the JSON document;
* :mod:`~nova_guardrails.lab.crash_matrix.cli`: :func:`main`, the command,
  with its worker processes.

The names below are those the command, the tests and the documentation
use: ``crash_matrix.run``, ``crash_matrix.evaluate``,
``crash_matrix.FAST_SUBSET``...
"""

from nova_guardrails.lab.crash_matrix import cells
from nova_guardrails.lab.crash_matrix import cli
from nova_guardrails.lab.crash_matrix import invariants
from nova_guardrails.lab.crash_matrix import operations
from nova_guardrails.lab.crash_matrix import report
from nova_guardrails.lab.crash_matrix import tracer

# Crash points and tracing.
TASK_STATE = tracer.TASK_STATE
HYPERVISOR = tracer.HYPERVISOR
LATE = tracer.LATE
CrashPoint = tracer.CrashPoint
Tracer = tracer.Tracer

# Operations.
H1, H2 = operations.H1, operations.H2
Operation = operations.Operation
OPERATIONS = operations.OPERATIONS
BY_NAME = operations.BY_NAME
FAST_SUBSET = operations.FAST_SUBSET

# Invariants and verdicts.
RECOVERED = invariants.RECOVERED
ERROR = invariants.ERROR
STUCK = invariants.STUCK
LOST = invariants.LOST
VERDICTS = invariants.VERDICTS
NOT_REACHED = invariants.NOT_REACHED
NEEDS_GUEST = invariants.NEEDS_GUEST
snapshot_state = invariants.snapshot_state
evaluate = invariants.evaluate

# Running.
Cell = cells.Cell
trace = cells.trace
clean_effects = cells.clean_effects
run_cell = cells.run_cell
run = cells.run

# Report and command.
summary = report.summary
markdown = report.markdown
main = cli.main
