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
"""Guard decisions: one log line each, and the JSON start-up report.

Every decision a guard takes about an instance is a :class:`Decision`. The
:class:`StartupReport` of a nova-compute start-up logs it (oslo.log, one line,
at INFO, or WARNING when the action failed) and keeps it as a row of the JSON
document written to ``[guardrails] report_path`` when ``init_host`` ends.
"""

import collections
import dataclasses
import datetime
import json
import os
import tempfile

from nova.compute import power_state as nova_power_state
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

REPORT_FORMAT_VERSION = 1

#: Runtime decisions (taken after start-up) the report keeps, newest last.
MAX_RUNTIME_DECISIONS = 100


def power_state_name(value):
    """Name of a nova power state integer: ``1 -> 'running'``.

    Uses ``nova.compute.power_state.STATE_MAP``; an unknown value is returned
    as its ``str``. ``None`` (not read) stays ``None``.
    """
    if value is None:
        return None
    return nova_power_state.STATE_MAP.get(value, str(value))


@dataclasses.dataclass(frozen=True)
class InstanceState:
    """The three states a recovery decision is keyed on.

    :ivar vm_state: ``instance.vm_state`` (nova.compute.vm_states value).
    :ivar task_state: ``instance.task_state`` or ``None``.
    :ivar power_state: the power state name read from the hypervisor
        (``'running'``, ``'shutdown'``, ``'pending'`` for no domain, ...).
    """

    vm_state: str | None
    task_state: str | None
    power_state: str | None

    @classmethod
    def of(cls, instance, power_state):
        """Snapshot ``instance`` with ``power_state`` (an int from the
        driver).
        """
        return cls(instance.vm_state, instance.task_state,
                   power_state_name(power_state))

    def __str__(self):
        return 'vm_state=%s task_state=%s power_state=%s' % (
            self.vm_state, self.task_state, self.power_state)


@dataclasses.dataclass
class Decision:
    """One guard decision about one instance: a row of the start-up report.

    :ivar guard: entry point name of the guard that decided.
    :ivar instance_uuid: the instance.
    :ivar before: :class:`InstanceState` when the guard looked.
    :ivar action: the action taken (the guard's vocabulary).
    :ivar reason: one line: why this action for that state.
    :ivar after: :class:`InstanceState` once the action ran.
    :ivar outcome: ``'done'``, ``'failed'`` (the action raised; ``error``
        says what) or ``'refused'`` (a destructive action was blocked).
    :ivar executed_by: ``'guardrails'`` or ``'nova'`` (delegated to nova's
        own code, as nova alone would have done).
    :ivar node: the hypervisor node, for decisions about a node rather than
        an instance (``instance_uuid`` is then ``None``).
    :ivar details: guard-specific facts, e.g. the port and the binding host
        found for ``revert_vif``.
    """

    guard: str
    instance_uuid: str | None
    before: InstanceState | None
    action: str
    reason: str
    after: InstanceState | None = None
    outcome: str = 'done'
    executed_by: str = 'guardrails'
    error: str | None = None
    node: str | None = None
    details: dict | None = None

    def as_dict(self):
        return dataclasses.asdict(self)


class StartupReport:
    """Decisions of one nova-compute start-up, logged and written as JSON.

    :param path: file the JSON document is written to (``[guardrails]
        report_path``); its directory is created when missing.
    :param host: ``[DEFAULT] host`` of this nova-compute.
    :param guards: names of the enabled guards, in order.
    """

    def __init__(self, path, host, guards):
        self.path = path
        self.host = host
        self.guards = list(guards)
        self.decisions = []
        self.runtime_decisions = collections.deque(
            maxlen=MAX_RUNTIME_DECISIONS)
        self.started_at = None
        self.finished_at = None
        self.status = 'not started'

    def begin(self):
        """Start a new start-up: forget earlier decisions and replace the
        previous report with one whose status is ``running``, so a start-up
        that dies leaves no stale ``completed`` report behind.
        """
        self.decisions = []
        self.runtime_decisions.clear()
        self.started_at = _now()
        self.finished_at = None
        self.status = 'running'
        self._write()

    def record(self, decision, runtime=False):
        """Keep ``decision`` as a report row and log it as one line."""
        if runtime:
            self.runtime_decisions.append(decision)
        else:
            self.decisions.append(decision)
        log = LOG.warning if decision.outcome != 'done' else LOG.info
        log('guardrails %(guard)s: %(subject)s before [%(before)s] '
            'action %(action)s by %(by)s (%(reason)s) -> %(outcome)s, after '
            '[%(after)s]%(error)s',
            {'guard': decision.guard,
             'subject': ('instance %s' % decision.instance_uuid
                         if decision.instance_uuid else
                         'node %s' % decision.node),
             'before': decision.before, 'action': decision.action,
             'by': decision.executed_by, 'reason': decision.reason,
             'outcome': decision.outcome, 'after': decision.after,
             'error': (((' %s' % decision.details) if decision.details
                        else '') + ((': %s' % decision.error)
                                    if decision.error else ''))},
            **({'instance_uuid': decision.instance_uuid}
               if decision.instance_uuid else {}))

    def record_runtime(self, decision):
        """Record a decision taken after start-up (an operation of the
        running service) and rewrite the report file with it.

        The report keeps the start-up's decisions and the latest
        :data:`MAX_RUNTIME_DECISIONS` runtime ones (older ones are only in
        the log), so neither memory nor the rewrite grows with the life of
        the process.
        """
        self.record(decision, runtime=True)
        self._write()

    def as_dict(self):
        return {
            'format_version': REPORT_FORMAT_VERSION,
            'host': self.host,
            'guards': self.guards,
            'started_at': self.started_at,
            'finished_at': self.finished_at,
            'status': self.status,
            'decisions': [d.as_dict() for d in
                          list(self.decisions) +
                          list(self.runtime_decisions)],
        }

    def finish(self, status):
        """End the start-up with ``status`` and write the JSON document.

        The file is replaced atomically (a temporary file in the same
        directory, then ``os.replace``). A write error is logged, never
        raised: the report must not stop nova-compute.
        """
        self.status = status
        self.finished_at = _now()
        if self._write():
            LOG.info('guardrails: start-up report (%(n)d decisions, '
                     '%(status)s) written to %(path)s',
                     {'n': len(self.decisions), 'status': status,
                      'path': self.path})

    def _write(self):
        try:
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                    'w', dir=directory, prefix='.startup-report.',
                    delete=False) as tmp:
                json.dump(self.as_dict(), tmp, indent=2, sort_keys=True)
                tmp.write('\n')
            os.replace(tmp.name, self.path)
        except OSError:
            LOG.exception('guardrails: could not write the start-up report '
                          'to %s ([guardrails] report_path)', self.path)
            return False
        return True


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()
