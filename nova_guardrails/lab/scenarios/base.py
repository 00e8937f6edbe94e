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
"""What every lab scenario shares: the Scenario record, the guards' report.

A :class:`Scenario` is one upstream bug's situation on the embedded nova
(:class:`~nova_guardrails.lab.harness.GuardrailsTestBase`): ``outcome(test)``
runs it and returns an outcome object with ``situation()``, ``cell(guarded)``,
a ``verdict`` string and ``as_dict()``, what the lab's table
(:mod:`nova_guardrails.lab.runner`) and ``--json`` print. The crash
scenarios of the recovery table default to
:func:`nova_guardrails.lab.scenarios.recovery_table.crash_and_restart`.

Also here: the guards' start-up report as the tests read it
(:func:`decision`, :func:`decisions`: ``[guardrails] report_path``, see
:mod:`nova_guardrails.report`), the vm_state/guest consistency the lab and
the crash matrix call "recovered" (:data:`GUEST_OF_VM_STATE`), and the
stand-in for the libvirt driver's disk copy over SSH in resizes
(:func:`fake_disk_migration`).
"""

import dataclasses
import json

import fixtures
import nova.conf

#: fakelibvirt's classes and nova's libvirt driver, as patch targets
#: (``test.crash_at(DOMAIN, 'shutdown')``, ``test.spy(LIBVIRT_DRIVER, ...)``).
DOMAIN = 'nova.tests.fixtures.libvirt.Domain'
CONNECTION = 'nova.tests.fixtures.libvirt.Connection'
LIBVIRT_DRIVER = 'nova.virt.libvirt.driver.LibvirtDriver'

CONF = nova.conf.CONF


@dataclasses.dataclass
class Scenario:
    """A crash scenario.

    :ivar name: identifier (also the functional test's subject).
    :ivar title: one line for the lab table.
    :ivar source: the upstream nova bug or blueprint it comes from.
    :ivar crash: ``f(test) -> server``: boot, operate, crash.
    :ivar restart_fault: optional ``f(test)`` run before the restart, to
        make the hypervisor fail during start-up.
    :ivar run: optional ``f(test, scenario) -> outcome`` replacing
        :func:`crash_and_restart` (the host scenarios).
    :ivar label: the upstream bug and a short description, for the lab's
        one-line-per-scenario table (at most 53 characters: the
        table truncates a longer one to fit 120 columns).
    """

    name: str
    title: str
    source: str
    crash: object = None
    restart_fault: object = None
    run: object = None
    label: str = ''

    def outcome(self, test):
        """Run the scenario on ``test``; its outcome (see the module)."""
        from nova_guardrails.lab.scenarios import recovery_table
        return (self.run or recovery_table.crash_and_restart)(test, self)


#: vm_state -> the guest power states consistent with it (the crash
#: matrix's and the lab's "recovered").
GUEST_OF_VM_STATE = {
    'active': ('running',),
    'stopped': ('shutdown', 'pending'),
    'paused': ('paused',),
    'suspended': ('shutdown',),
    'rescued': ('running',),
    'resized': ('running', 'shutdown'),
    'soft-delete': ('shutdown', 'pending'),
    'shelved': ('shutdown',),
    'shelved_offloaded': ('pending',),
}


def decision(server):
    """The guards' last decision about ``server`` in the start-up report.

    :param server: a server dict of nova's API (its ``'id'``).
    :returns: the report's last row for that instance, a
        :class:`nova_guardrails.report.Decision` as a dict (``guard``,
        ``instance_uuid``, ``before``, ``action``, ``reason``, ``after``,
        ``outcome``, ``executed_by``, ...), or None: no row, no report
        file, or nova alone (no ``[guardrails]`` options registered).
    """
    if not hasattr(CONF, 'guardrails'):
        return None
    try:
        with open(CONF.guardrails.report_path) as f:
            report = json.load(f)
    except OSError:
        return None
    rows = [d for d in report['decisions']
            if d['instance_uuid'] == server['id']]
    return rows[-1] if rows else None


def decisions():
    """Every row of the guards' start-up report, in order: dicts as in
    :func:`decision`, start-up decisions then runtime ones (``[]``: no
    report file, or nova alone).
    """
    if not hasattr(CONF, 'guardrails'):
        return []
    try:
        with open(CONF.guardrails.report_path) as f:
            return json.load(f)['decisions']
    except OSError:
        return []


def harness():
    """:mod:`nova_guardrails.lab.harness`, imported on first use."""
    from nova_guardrails.lab import harness
    return harness


def fake_disk_migration(test):
    """Stub the libvirt driver's ``migrate_disk_and_power_off`` for
    ``test``: it powers the guest off and returns ``'{}'`` (no disk info),
    as nova's own libvirt resize tests do.
    """
    # Disks move between hosts over SSH in the libvirt driver; the fake
    # hosts here share one process and nova's own libvirt resize tests stub
    # the copy the same way. The guest is powered off, as the real method
    # does before copying.
    def migrate_disk_and_power_off(driver, context, instance, *args,
                                   **kwargs):
        driver.power_off(instance)
        return '{}'
    test.useFixture(fixtures.MonkeyPatch(
        LIBVIRT_DRIVER + '.migrate_disk_and_power_off',
        migrate_disk_and_power_off))
