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
"""Scenario d: an evacuation whose spawn fails on the destination, every
disk of the instance on Ceph.

hv1 runs a server with a root disk, an ephemeral disk, a swap disk and a
config drive, all rbd images of the pool (``<uuid>_disk``,
``_disk.eph0``, ``_disk.swap``, ``_disk.config``); a marker is written into
each through the rbd binding. hv1 dies (its nova-compute killed, its guest
powered off) and is forced down; the server is evacuated to hv2, whose
nova-compute fails the spawn (fault injected in the libvirt driver's
``_create_guest``, inside ``_create_guest_with_network`` whose error path
cleans up, as a libvirt or QEMU error starting the guest would). The
images are the customer's only copy: every one must still be in the pool,
with its contents, after the failed spawn and after hv1's nova-compute
starts again.
"""

import pytest

#: Inside _create_guest_with_network's error handling (which cleans up), as
#: a libvirt or QEMU error starting the guest would.
RAISE = {'GUARDRAILS_RAISE_AT':
         'nova.virt.libvirt.driver.LibvirtDriver._create_guest'}
MARK = b'nova-guardrails real tier: evacuation marker'
SUFFIXES = ('_disk', '_disk.config', '_disk.eph0', '_disk.swap')


def offset(tier, image):
    """Where the marker goes: 4 KiB before the end of the image."""
    return tier.rbd_size(image) - 4096


@pytest.mark.parametrize('guarded', [True, False],
                         ids=['guarded', 'nova_alone'])
def test_evacuation_spawn_fails_on_destination(tier, measured, guarded):
    source = tier.compute('hv1', guarded=guarded).start().wait_up()
    destination = tier.compute('hv2', guarded=guarded, env=RAISE)
    destination.start().wait_up()
    server = tier.boot('evacuate-rbd', host='hv1', flavor='tiny.disks',
                       config_drive=True)['id']
    images = ['%s%s' % (server, suffix) for suffix in SUFFIXES]
    assert tier.rbd_images(server) == images
    for image in images:
        tier.rbd_write(image, offset(tier, image), MARK)

    source.kill()
    tier.power_off_guest('hv1', server)
    tier.force_down('hv1')
    tier.action(server, {'evacuate': {}})
    destination.wait_marker('raise')
    migration = tier.wait_for(
        lambda: [m for m in tier.migrations(server)
                 if m['migration_type'] == 'evacuation' and
                 m['status'] in ('failed', 'error', 'done', 'completed')],
        90, 'the evacuation to end')[0]
    tier.wait_for(lambda: tier.server_state(server)['task_state'] is None,
                  60, 'the rebuild to end')
    state = tier.server_state(server)
    left = tier.rbd_images(server)
    markers = {image[len(server):]: tier.rbd_read(
        image, offset(tier, image), len(MARK)) == MARK
        for image in left}
    measured(migration=migration['status'], server=state,
             images_left=[i[len(server):] for i in left], markers=markers,
             guest_hv2=(tier.guest('hv2', server) or {}).get('state'))
    assert left == images, 'rbd images removed: %s' % sorted(
        set(images) - set(left))
    assert all(markers.values()), markers

    # hv1 is repaired and its nova-compute starts again (same nova.conf):
    # its start-up clean-up of evacuated instances must not take them
    # either.
    tier.force_down('hv1', False)
    source.restart().wait_up()
    tier.settle(5)
    later = tier.rbd_images(server)
    later_markers = {image[len(server):]: tier.rbd_read(
        image, offset(tier, image), len(MARK)) == MARK for image in later}
    measured(after_source_restart=tier.server_state(server),
             images_after_source_restart=[i[len(server):] for i in later],
             guest_hv1=(tier.guest('hv1', server) or {}).get('state'))
    assert later == images, 'rbd images removed: %s' % sorted(
        set(images) - set(later))
    assert all(later_markers.values()), later_markers
