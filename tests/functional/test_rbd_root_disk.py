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
"""rbd_root_disk guard on real nova 34 and a real Ceph (nova bug
1419785, its evacuation case).

A single-node Ceph cluster from Debian's packages runs on loopback for this
module (nova_guardrails.lab.ceph). nova's libvirt driver (over fakelibvirt)
runs with [libvirt] images_type = rbd against it: nova's own RBDDriver and
the rados/rbd bindings, no fake rbd. nova's libvirt functional base stubs
the image creation of spawn, so each test writes the root disk
<uuid>_disk into the pool itself, with known bytes, as spawn would have.
The bug's own failed evacuation (every image of the instance) is
regressions/test_bug_1419785_rbd_evacuation.py, on this module's cluster and
_Base.
"""

import os
import subprocess
import sys
import unittest

import fixtures

import nova.conf
from nova_guardrails.lab import ceph
from nova_guardrails.lab import harness
from nova_guardrails.lab import scenarios

CONF = nova.conf.CONF
CLUSTER = None
A, C = scenarios.A, scenarios.C
#: The images nova's libvirt driver puts in the pool for an instance whose
#: flavor has an ephemeral disk and swap, with a config drive.
EVERY_IMAGE = ('disk', 'disk.local', 'disk.swap', 'disk.config')


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
    global CLUSTER
    if CLUSTER is not None:
        CLUSTER.stop()
        CLUSTER = None


class _Base(harness.GuardrailsTestBase):

    def setUp(self):
        super().setUp()
        scenarios.use_rbd(self, CLUSTER)
        import rados
        self.rados = rados.Rados(conffile=CLUSTER.conf)
        self.rados.connect(timeout=10)
        self.addCleanup(self.rados.shutdown)
        self.ioctx = self.rados.open_ioctx(CLUSTER.pool)
        self.addCleanup(self.ioctx.close)

    def write_image(self, name, size=1024 * 1024):
        import rbd
        data = os.urandom(size)
        rbd.RBD().create(self.ioctx, name, size)
        with rbd.Image(self.ioctx, name) as image:
            image.write(data, 0)
        return data

    def read_image(self, name):
        import rbd
        if name not in rbd.RBD().list(self.ioctx):
            return None
        with rbd.Image(self.ioctx, name) as image:
            return image.read(0, image.size())

    def trashed(self):
        import rbd
        return [e['name'] for e in rbd.RBD().trash_list(self.ioctx)]

    def boot_with_root(self, host=A):
        [server] = scenarios.boot_on(self, host)
        root = '%s_disk' % server['id']
        return server, root, self.write_image(root)

    def evacuate_to_failing_host(self, force_old_cleanup=False):
        return scenarios.evacuate_to_failing_host(
            self, self.write_image, force_old_cleanup)

    def decisions(self):
        return [d for d in scenarios.decisions()
                if d['guard'] == 'rbd_root_disk']

    # An instance with every kind of image nova puts in the pool ----------

    def boot_with_every_image(self, host=A):
        """A server on ``host`` whose flavor has an ephemeral disk and swap,
        with a config drive; its images written into the pool as spawn
        would have (the functional base stubs their creation). Returns
        (server, {image name: bytes}).
        """
        flavor = self._create_flavor(memory_mb=512, vcpu=1, disk=1,
                                     ephemeral=1, swap=512)
        body = self._build_server(flavor_id=flavor, networks='none',
                                  host=host)
        body['config_drive'] = True
        server = self._wait_for_state_change(
            self.admin_api.post_server({'server': body}), 'ACTIVE')
        self.assertTrue(self.instance(server).config_drive)
        return server, self.write_images(server)

    def write_images(self, server):
        return {name: self.write_image(name, size=256 * 1024)
                for name in ['%s_%s' % (server['id'], suffix)
                             for suffix in EVERY_IMAGE]}

    def images_of(self, server):
        """{name: bytes} of every image of ``server`` left in the pool."""
        import rbd
        return {name: self.read_image(name)
                for name in rbd.RBD().list(self.ioctx)
                if name.startswith(server['id'])}

    def assertImagesIntact(self, images, server):
        """Every image of ``images`` is in the pool with its bytes."""
        left = self.images_of(server)
        self.assertEqual(sorted(images), sorted(left))
        for name, data in images.items():
            self.assertEqual(data, left[name], '%s changed' % name)

    def guest_creation_fails(self):
        def fail(*args, **kwargs):
            from nova.tests.fixtures import libvirt as fakelibvirt
            raise fakelibvirt.make_libvirtError(
                fakelibvirt.libvirtError,
                'Cannot allocate memory (memory overcommit)',
                error_code=fakelibvirt.VIR_ERR_INTERNAL_ERROR)
        self.useFixture(fixtures.MonkeyPatch(
            scenarios.DOMAIN + '.createWithFlags', fail))

    def spawn_reports_created_disks(self, create=None):
        """spawn's _create_image reports it created a disk
        (``created_disks`` is one boolean for root, ephemeral and swap), so
        a failed spawn cleans up with cleanup_instance_disks=True;
        ``create(instance)`` runs first (writes what spawn creates).
        """
        def _create_image(driver, context, instance, *args, **kwargs):
            if create is not None:
                create(instance)
            return False, True
        self.useFixture(fixtures.MonkeyPatch(
            scenarios.LIBVIRT_DRIVER + '._create_image', _create_image))

    def evacuate_every_image_to_failing_host(self):
        """nova bug 1419785's failed evacuation with every image: the server
        lives on A (shared pool); A goes down; the evacuation to C fails
        creating the guest, after spawn reported it created a disk.
        """
        self.start_compute(A)
        self.start_compute(C)
        server, images = self.boot_with_every_image(A)
        self.stop_compute(A)
        scenarios.force_down(self, A)
        self.guest_creation_fails()
        self.spawn_reports_created_disks()
        self.admin_api.post_server_action(server['id'], {'evacuate': {}})
        server = self._wait_for_server_parameter(server, {'status': 'ERROR'})
        self.assertEqual(A, server['OS-EXT-SRV-ATTR:host'])
        return server, images

    def rebuild_failing_spawn(self):
        """A rebuild on the server's own host whose spawn fails after
        creating the new images (the rebuild's destroy removed the old
        ones, as it must).
        """
        self.start_compute(A)
        server, _ = self.boot_with_every_image(A)
        created = {}

        def create(instance):
            self.assertEqual('rebuild_spawning', instance.task_state)
            created.update(self.write_images(server))
        self.guest_creation_fails()
        self.spawn_reports_created_disks(create)
        self.api.post_server_action(
            server['id'], {'rebuild': {'imageRef': server['image']['id']}})
        server = self._wait_for_server_parameter(server, {'status': 'ERROR'})
        self.assertEqual(len(EVERY_IMAGE), len(created))
        return server, created


class GuardedRbdTest(_Base):

    def test_failed_evacuation_keeps_root(self):
        server, root, data = self.evacuate_to_failing_host()
        self.assertEqual(data, self.read_image(root))

    def test_forced_old_cleanup_is_blocked(self):
        server, root, data = self.evacuate_to_failing_host(
            force_old_cleanup=True)
        self.assertEqual(data, self.read_image(root))
        [decision] = self.decisions()
        self.assertEqual(('keep_images', 'refused'),
                         (decision['action'], decision['outcome']))
        self.assertEqual([root], decision['details']['images'])
        self.assertIn('spawn', decision['details']['caller'])
        self.assertIn('task_state=rebuild_spawning host=hostA, not this '
                      'host (hostC)', decision['reason'])

    def test_rebuild_on_its_host_replaces_the_root_disk(self):
        # A rebuild destroys the old disk before spawning the new image; a
        # kept disk would be reused and the server would boot the old one.
        self.start_compute(A)
        server, root, _ = self.boot_with_root()
        self._rebuild_server(server, server['image']['id'])
        self.assertIsNone(self.read_image(root))
        self.assertEqual([], self.decisions())

    def test_rebuild_with_trash_delay_removes_not_trashes(self):
        self.use_nova_conf('[guardrails]\nrbd_trash_delay = 3600\n')
        self.start_compute(A)
        server, root, _ = self.boot_with_root()
        self._rebuild_server(server, server['image']['id'])
        self.assertIsNone(self.read_image(root))
        self.assertEqual([], self.trashed())

    def test_genuine_delete_removes_every_image(self):
        self.start_compute(A)
        server, root, _ = self.boot_with_root()
        self.write_image('%s_disk.local' % server['id'])
        self._delete_server(server)
        self.assertIsNone(self.read_image(root))
        self.assertIsNone(self.read_image('%s_disk.local' % server['id']))
        self.assertEqual([], self.trashed())

    def test_genuine_delete_to_trash_and_restore(self):
        self.use_nova_conf('[guardrails]\nrbd_trash_delay = 3600\n')
        self.start_compute(A)
        server, root, data = self.boot_with_root()
        self.write_image('%s_disk.local' % server['id'])
        self._delete_server(server)
        self.assertIsNone(self.read_image(root))
        self.assertEqual([root], self.trashed())
        # The ephemeral disk keeps nova's behaviour: removed.
        self.assertIsNone(self.read_image('%s_disk.local' % server['id']))
        [decision] = self.decisions()
        self.assertEqual('trash_root', decision['action'])
        # The operator's commands, reading [libvirt] from a nova.conf.
        conf = os.path.join(self.state_path, 'nova.conf')
        with open(conf, 'w') as f:
            f.write('[libvirt]\nimages_rbd_pool = %s\n'
                    'images_rbd_ceph_conf = %s\n' % (CLUSTER.pool,
                                                     CLUSTER.conf))
        command = [os.path.join(os.path.dirname(sys.executable),
                                'nova-guardrails'), 'rbd-trash',
                   '--config-file', conf]
        listing = subprocess.run(command + ['list'], capture_output=True,
                                 text=True, check=True).stdout
        self.assertIn(server['id'], listing)
        self.assertIn(root, listing)
        restored = subprocess.run(command + ['restore', server['id']],
                                  capture_output=True, text=True,
                                  check=True).stdout
        self.assertIn('restored %s/%s' % (CLUSTER.pool, root), restored)
        self.assertEqual(data, self.read_image(root))
        self.assertEqual([], self.trashed())
        missing = subprocess.run(command + ['restore', server['id']],
                                 capture_output=True, text=True)
        self.assertEqual(1, missing.returncode)

    def test_failed_rebuild_spawn_keeps_every_image(self):
        server, created = self.rebuild_failing_spawn()
        self.assertImagesIntact(created, server)
        [decision] = self.decisions()
        self.assertEqual(('keep_images', 'refused'),
                         (decision['action'], decision['outcome']))
        self.assertEqual(sorted(created), decision['details']['images'])
        self.assertIn('rebuild spawn', decision['reason'])

    def test_genuine_delete_removes_every_kind_of_image(self):
        self.start_compute(A)
        server, _ = self.boot_with_every_image(A)
        self._delete_server(server)
        self.assertEqual({}, self.images_of(server))
        self.assertEqual([], self.decisions())


class NovaAloneRbdTest(_Base):
    NOVA_CONF = harness.NOVA_ALONE_CONF

    def test_failed_evacuation_keeps_root(self):
        # nova 34 cleans up only the disks spawn created.
        server, root, data = self.evacuate_to_failing_host()
        self.assertEqual(data, self.read_image(root))

    def test_forced_old_cleanup_deletes_root(self):
        server, root, data = self.evacuate_to_failing_host(
            force_old_cleanup=True)
        self.assertIsNone(self.read_image(root))

    def test_genuine_delete_removes_root(self):
        self.start_compute(A)
        server, root, _ = self.boot_with_root()
        self._delete_server(server)
        self.assertIsNone(self.read_image(root))

    def test_failed_rebuild_spawn_deletes_every_image(self):
        server, created = self.rebuild_failing_spawn()
        self.assertEqual({}, self.images_of(server))
