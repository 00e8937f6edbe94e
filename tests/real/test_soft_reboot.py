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
"""Scenario a: a soft reboot killed right after the guest shut down.

nova bug 1072751. nova-compute is killed (SIGKILL) right after the libvirt
driver's ``_soft_reboot`` asked the guest to shut down (``Guest.shutdown``,
an ACPI request); the guest then powers off, as a guest OS honouring the
request would (the tier's guests have no OS: the test powers the domain off
through libvirt). At restart the instance is ``active / reboot_started``
with its guest shut off. nova-compute restarts with the same nova.conf.
"""

import pytest

CRASH = {'GUARDRAILS_CRASH_AT': 'nova.virt.libvirt.guest.Guest.shutdown:after'}


def soft_reboot_killed(tier, guarded):
    compute = tier.compute('hv1', guarded=guarded, env=CRASH)
    compute.start().wait_up()
    server = tier.boot('bug-1072751')['id']
    before = tier.guest('hv1', server)
    assert before['state'] == 'running'
    tier.action(server, {'reboot': {'type': 'SOFT'}})
    marker = compute.wait_crashed()
    assert 'Guest.shutdown' in marker
    tier.power_off_guest('hv1', server)
    at_crash = tier.server_state(server)
    assert (at_crash['vm_state'], at_crash['task_state']) == (
        'active', 'reboot_started')
    assert tier.guest('hv1', server)['state'] == 'shutoff'
    compute.restart().wait_up()
    return compute, server, before, at_crash


@pytest.mark.parametrize('guarded', [True, False],
                         ids=['guarded', 'nova_alone'])
def test_soft_reboot_killed_after_guest_shutdown(tier, measured, guarded):
    compute, server, before, at_crash = soft_reboot_killed(tier, guarded)
    tier.wait_server(server, 'ACTIVE', None, timeout=90)
    after = tier.guest('hv1', server)
    state = tier.server_state(server)
    measured(at_crash=at_crash, after=state, guest=after['state'])
    # Both recover it: nova has converted this case to a HARD reboot since
    # 2015; the guard decides it explicitly and reports it.
    assert (state['vm_state'], state['task_state'], state['power_state']) \
        == ('active', None, 1)
    assert after['state'] == 'running'
    assert after['id'] != before['id']
    if guarded:
        report = compute.report()
        assert report['status'] == 'completed', report
        [row] = [r for r in report['decisions']
                 if r['instance_uuid'] == server]
        measured(decision=row['action'], outcome=row['outcome'])
        assert row['before'] == {'vm_state': 'active',
                                 'task_state': 'reboot_started',
                                 'power_state': 'shutdown'}
        assert (row['action'], row['outcome']) == ('reboot_hard', 'done')
        assert row['after']['task_state'] is None
