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
"""Scenario b: nova-compute killed with instances stable and in flight, and
a reboot requested while it was down.

On hv1, five servers. nova-compute holds three operations in flight (the
launcher blocks the thread at each point, GUARDRAILS_HOLD_AT): a suspend
right after the driver saved the guest (managed save), a backup before the
driver's snapshot, a rescue right after the driver started the rescue
guest. The test kills nova-compute (SIGKILL) once the three are held, then
asks nova-api for a soft reboot of a fourth server: nova-api sets
``rebooting`` and casts to the compute's queue in RabbitMQ, where the
request waits. The fifth server stays stable.

nova-compute restarts with the same nova.conf. Guarded: each instance is
recovered as the start-up report says (README's table), the stable one is
left alone, the queued reboot runs exactly once when delivered (one
``compute_reboot_instance`` event in the server's instance actions, its
guest restarted once). nova alone: measured.
"""

import pytest

DRIVER = 'nova.virt.libvirt.driver.LibvirtDriver.'
HOLD = {'GUARDRAILS_HOLD_AT': ';'.join([
    DRIVER + 'suspend:after',
    DRIVER + 'snapshot:before',
    DRIVER + 'rescue:after',
])}


def reboot_events(tier, server):
    """[(event result)] of every compute_reboot_instance event of the
    server's instance actions.
    """
    return [event.get('result')
            for action in tier.actions(server)
            for event in action.get('events', [])
            if event['event'] == 'compute_reboot_instance']


def transitional(tier, compute):
    names = ('stable', 'suspend', 'backup', 'rescue', 'reboot')
    servers = {name: tier.boot('restart-%s' % name)['id'] for name in names}
    tier.action(servers['suspend'], {'suspend': None})
    tier.action(servers['backup'], {'createBackup': {
        'name': 'restart-backup', 'backup_type': 'daily', 'rotation': 1}})
    tier.action(servers['rescue'], {'rescue': {}})
    compute.wait_marker('hold', count=3)
    compute.kill()
    tier.action(servers['reboot'], {'reboot': {'type': 'SOFT'}})
    return servers


@pytest.mark.parametrize('guarded', [True, False],
                         ids=['guarded', 'nova_alone'])
def test_restart_with_instances_in_flight_and_a_queued_reboot(
        tier, measured, guarded):
    compute = tier.compute('hv1', guarded=guarded, env=HOLD)
    compute.start().wait_up()
    servers = transitional(tier, compute)
    at_kill = {name: tier.server_state(s) for name, s in servers.items()}
    guests = {name: tier.guest('hv1', s) for name, s in servers.items()}
    assert {name: s['task_state'] for name, s in at_kill.items()} == {
        'stable': None, 'suspend': 'suspending', 'backup': 'image_backup',
        'rescue': 'rescuing', 'reboot': 'rebooting'}
    assert guests['suspend']['managed_save']
    # The reboot waits in RabbitMQ: one message, no consumer.
    assert tier.queue('compute.hv1') == (1, 0)

    compute.restart().wait_up()
    # Until the delivered reboot finished (its event has a result), then
    # until every instance is stable or 30 s passed.
    tier.wait_for(lambda: all(reboot_events(tier, servers['reboot']) or
                              [None]), 90, 'the queued reboot to finish')
    tier.wait_for(lambda: all(tier.server_state(s)['task_state'] is None
                              for s in servers.values()), 30,
                  'every instance stable', raise_on_timeout=False)
    settled = {name: tier.server_state(s) for name, s in servers.items()}
    after = {name: tier.guest('hv1', s) for name, s in servers.items()}
    events = reboot_events(tier, servers['reboot'])
    measured(at_kill={n: s['task_state'] for n, s in at_kill.items()},
             after={n: (s['vm_state'], s['task_state'])
                    for n, s in settled.items()},
             guests={n: (g or {}).get('state') for n, g in after.items()},
             reboot_events=events,
             reboot_guest_restarted=after['reboot']['id'] !=
             guests['reboot']['id'])
    if not guarded:
        return
    report = compute.wait_report()
    decisions = {name: [(r['action'], r['outcome'])
                        for r in report['decisions']
                        if r['instance_uuid'] == server]
                 for name, server in servers.items()}
    measured(decisions=decisions, report_status=report['status'])
    assert report['status'] == 'completed', report
    assert decisions['stable'] == []
    assert decisions['suspend'][0] == ('finish_suspend', 'done')
    assert decisions['backup'][0] == ('clear_to_guest', 'done')
    assert decisions['rescue'][0] == ('reboot_hard', 'done')
    assert decisions['reboot'][0][0] == 'queued'
    assert {n: (s['vm_state'], s['task_state'])
            for n, s in settled.items()} == {
        'stable': ('active', None), 'suspend': ('suspended', None),
        'backup': ('active', None), 'rescue': ('active', None),
        'reboot': ('active', None)}
    # The stable and the backed-up guests were not touched.
    assert after['stable'] == guests['stable']
    assert after['backup'] == guests['backup']
    assert after['suspend']['managed_save']
    assert after['rescue']['state'] == 'running'
    # The queued reboot ran exactly once.
    assert events == ['Success'], events
    assert after['reboot']['state'] == 'running'
    assert after['reboot']['id'] != guests['reboot']['id']
