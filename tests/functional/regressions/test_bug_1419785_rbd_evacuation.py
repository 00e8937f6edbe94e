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
"""Regression test for nova bug 1419785's evacuation case: a failed
evacuation spawn deletes the instance's images from the shared Ceph pool.

https://bugs.launchpad.net/nova/+bug/1419785

(The bug's HA standby is test_bug_1419785.py; this case needs a Ceph
cluster, so it is a module of its own.) In the field an evacuation's spawn
failed on the destination (memory overcommit); the libvirt driver's
clean-up then ran with the instance's disks, and
``LibvirtDriver._cleanup_rbd`` deleted its root disk from the Ceph pool the
source shares: the data was gone. nova 22 made spawn clean up only what it
created, but ``created_disks`` is one boolean for root, ephemeral and swap,
and nova 34's ``_cleanup_rbd`` still removes, through
``RBDDriver.cleanup_volumes``, every image whose name starts with the
instance uuid.

A single-node Ceph cluster on loopback (nova_guardrails.lab.ceph), nova's
libvirt driver with ``images_type = rbd``: a server on A with an ephemeral
disk, swap and a config drive, evacuated to C, where creating the guest
fails after spawn reported it created a disk. Guarded, the rbd_root_disk
guard's ``_cleanup_rbd`` removes nothing of an instance that is not this
host's (``instance.host`` stays A until the rebuild succeeds) and records
one ``keep_images`` row naming every image kept.
"""

from functional import test_rbd_root_disk
from nova_guardrails.lab import harness


def setUpModule():
    # The cluster of test_rbd_root_disk, whose _Base the tests use.
    test_rbd_root_disk.setUpModule()


def tearDownModule():
    test_rbd_root_disk.tearDownModule()


class GuardedRbdTest(test_rbd_root_disk._Base):

    def test_bug_1419785_failed_evacuation_keeps_every_image(self):
        # The failed evacuation with an ephemeral disk, swap and a config
        # drive: the instance is A's; C must not remove any of its images.
        server, images = self.evacuate_every_image_to_failing_host()
        self.assertImagesIntact(images, server)
        [decision] = self.decisions()
        self.assertEqual(('keep_images', 'refused'),
                         (decision['action'], decision['outcome']))
        self.assertEqual(sorted(images), decision['details']['images'])
        self.assertIn('spawn', decision['details']['caller'])
        self.assertIn('not this host (hostC)', decision['reason'])


class NovaAloneRbdTest(test_rbd_root_disk._Base):
    NOVA_CONF = harness.NOVA_ALONE_CONF

    def test_bug_1419785_failed_evacuation_deletes_every_image(self):
        # What the guard prevents: C's failed spawn removes every image of
        # A's instance from the shared pool.
        server, images = self.evacuate_every_image_to_failing_host()
        self.assertEqual({}, self.images_of(server))
