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
"""Scenario e: a resize whose destination finished the disk work, then
nova-compute killed; the guest keeps writing to its root disk.

hv1 runs a server (root disk on Ceph); it is resized to a bigger flavor,
nova picks hv2. hv2's nova-compute is killed (SIGKILL) right after the
libvirt driver's ``finish_migration`` (the guest runs on hv2, task_state
``resize_finish``; the driver took the ``nova-resize`` snapshot of the root
disk). Data is then written to the root disk through the rbd binding, as
the running guest would. hv2's nova-compute restarts with the same
nova.conf; after the recovery the data must still be on the root disk.
"""

import pytest

CRASH = {'GUARDRAILS_CRASH_AT':
         'nova.virt.libvirt.driver.LibvirtDriver.finish_migration:after'}
DATA = b'written by the guest after the resize finished on hv2'
OFFSET = 8 * 1024 * 1024


@pytest.mark.parametrize('guarded', [True, False],
                         ids=['guarded', 'nova_alone'])
def test_resize_killed_after_finish_migration(tier, measured, guarded):
    tier.compute('hv1', guarded=guarded).start().wait_up()
    destination = tier.compute('hv2', guarded=guarded, env=CRASH)
    destination.start().wait_up()
    server = tier.boot('resize-rbd', host='hv1')['id']
    root = '%s_disk' % server
    tier.action(server, {'resize': {'flavorRef': tier.flavors['tiny.big']}})
    marker = destination.wait_crashed()
    assert 'finish_migration' in marker
    at_crash = tier.server_state(server)
    snapshots = tier.rbd_snapshots(root)
    guest_hv2 = (tier.guest('hv2', server) or {}).get('state')
    assert at_crash['task_state'] == 'resize_finish', at_crash
    tier.rbd_write(root, OFFSET, DATA)

    destination.restart().wait_up()
    # nova alone leaves resize_finish as it is (nova 34's _init_instance
    # has no case for it): 20 s show it.
    recovered = tier.wait_for(
        lambda: tier.server_state(server)['task_state'] is None,
        90 if guarded else 20, 'the recovery of the resize',
        raise_on_timeout=False)
    state = tier.server_state(server)
    kept = tier.rbd_read(root, OFFSET, len(DATA)) == DATA
    measured(at_crash=at_crash, snapshots_at_crash=snapshots,
             guest_hv2_at_crash=guest_hv2, after=state,
             recovered=bool(recovered), data_kept=kept,
             snapshots_after=tier.rbd_snapshots(root),
             guests={hv: (tier.guest(hv, server) or {}).get('state')
                     for hv in ('hv1', 'hv2')})
    if guarded:
        report = destination.wait_report()
        measured(decisions=[(r['action'], r['outcome'])
                            for r in report['decisions']
                            if r['instance_uuid'] == server])
        assert recovered, state
    assert kept, ('the data the guest wrote after the resize finished on '
                  'hv2 is gone from its root disk (state %s)' % state)
