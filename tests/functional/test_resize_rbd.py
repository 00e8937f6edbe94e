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
"""A resize interrupted on its source, root disk on Ceph (resize_migrating).

The source powered the guest off for the copy and nova-compute died. With
rbd the disk is shared: nothing was copied, and the resize snapshot
(``nova-resize``) the driver's revert rolls back to exists only once the
destination ran ``_create_image``. The libvirt driver's
``finish_revert_migration`` rolls the root disk back to that snapshot: with
no snapshot it raises. recovery_table used to move the allocations back
first, then fail there, and leave the instance in resize_migrating on
every restart (nova alone clears the task_state). Now the preconditions
come first: the root disk's data stays as the guest left it, the guest runs
again on the source, the allocations are back there, the task_state is
cleared.

A real single-node Ceph (nova_guardrails.lab.ceph) and nova's own
RBDDriver; the hypervisor is nova's fakelibvirt.
"""

import os
import unittest

import fixtures
import nova.conf
from nova.virt.libvirt import imagebackend

from nova_guardrails.lab import ceph
from nova_guardrails.lab import harness
from nova_guardrails.lab import scenarios

CONF = nova.conf.CONF
DRIVER = scenarios.LIBVIRT_DRIVER
SOURCE = 'compute1'
DEST = 'compute2'
NEW_FLAVOR = '2'
CLUSTER = None
#: nova's own image backend factory: nova's libvirt functional base
#: replaces it with a fake; here the root disk is a real rbd image.
REAL_IMAGE_BACKEND = imagebackend.Backend.backend


def setUpModule():
    global CLUSTER
    lacking = ceph.missing()
    if lacking:
        if os.environ.get('CI'):
            raise RuntimeError('Ceph is required under CI and is missing: '
                               '%s (make ceph)' % ', '.join(lacking))
        raise unittest.SkipTest('Ceph not installed (outside CI): %s'
                                % ', '.join(lacking))
    CLUSTER = ceph.Cluster()
    CLUSTER.start()


def tearDownModule():
    if CLUSTER is not None:
        CLUSTER.stop()


class _Base(harness.GuardrailsTestBase):

    def setUp(self):
        super().setUp()
        scenarios.use_rbd(self, CLUSTER)
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.imagebackend.Backend.backend',
            REAL_IMAGE_BACKEND))
        scenarios.fake_disk_migration(self)
        self.flags(allow_resize_to_same_host=False)
        import rados
        self.rados = rados.Rados(conffile=CLUSTER.conf)
        self.rados.connect(timeout=10)
        self.addCleanup(self.rados.shutdown)
        self.ioctx = self.rados.open_ioctx(CLUSTER.pool)
        self.addCleanup(self.ioctx.close)
        self.start_compute(SOURCE)
        self.start_compute(DEST)
        self.server = self._create_server(networks='none', host=SOURCE)
        self.root = '%s_disk' % self.server['id']
        self.data = self.write_image(self.root)

    def write_image(self, name, size=1024 * 1024):
        import rbd
        data = os.urandom(size)
        rbd.RBD().create(self.ioctx, name, size)
        with rbd.Image(self.ioctx, name) as image:
            image.write(data, 0)
        return data

    def read_image(self, name):
        import rbd
        with rbd.Image(self.ioctx, name) as image:
            return image.read(0, image.size())

    def interrupted_on_source(self):
        crashed = self.crash_at(DRIVER, 'migrate_disk_and_power_off',
                                when='after')
        scenarios.interrupt(self, self.server, crashed,
                            {'resize': {'flavorRef': NEW_FLAVOR}})
        self.assertEqual(('active', 'resize_migrating'),
                         self.server_states(self.server)[:2])
        self.restart_compute_service(SOURCE)


class GuardedResizeMigratingRbdTest(_Base):
    NOVA_CONF = harness.GUARDED_NOVA_CONF

    def test_resize_migrating_on_rbd_is_rolled_back(self):
        self.interrupted_on_source()
        self.assertEqual(('active', None, 'running'),
                         self.server_states(self.server))
        self.assertEqual('running',
                         self.guest_power_state(SOURCE, self.server))
        self.assertEqual(self.data, self.read_image(self.root))
        import rbd
        with rbd.Image(self.ioctx, self.root) as image:
            self.assertEqual([], [s['name'] for s in image.list_snaps()])
        allocations = self._get_allocations_by_server_uuid(self.server['id'])
        self.assertEqual([self._get_provider_uuid_by_host(SOURCE)],
                         list(allocations))
        decision = scenarios.decision(self.server)
        self.assertGuardrailsDecision(decision, 'revert_resize')
        # Restarting again changes nothing: it is not stuck.
        self.restart_compute_service(SOURCE)
        self.assertEqual(('active', None, 'running'),
                         self.server_states(self.server))


class NovaAloneResizeMigratingRbdTest(_Base):
    NOVA_CONF = harness.NOVA_ALONE_CONF

    def test_resize_migrating_on_rbd(self):
        """nova 34 alone: its revert fails, the task_state is cleared, the
        guest stays off, the allocations stay on the destination.
        """
        self.interrupted_on_source()
        self.assertEqual(('active', None),
                         self.server_states(self.server)[:2])
        self.assertEqual('shutdown',
                         self.guest_power_state(SOURCE, self.server))
        self.assertEqual(self.data, self.read_image(self.root))
        self.assertIn('Failed to revert crashed migration',
                      self.stdlog.logger.output)
