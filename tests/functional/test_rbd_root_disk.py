"""rbd_root_disk guard on real nova 34 and a real Ceph (issue 6; seed 004).

A single-node Ceph cluster from Debian's packages runs on loopback for this
module (nova_guardrails.lab.ceph). nova's libvirt driver (over fakelibvirt)
runs with [libvirt] images_type = rbd against it: nova's own RBDDriver and
the rados/rbd bindings, no fake rbd. nova's libvirt functional base stubs
the image creation of spawn, so each test writes the root disk
<uuid>_disk into the pool itself, with known bytes, as spawn would have.
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
        return [d for d in scenarios._decisions()
                if d['guard'] == 'rbd_root_disk']


class GuardedRbdTest(_Base):

    def test_seed_004_failed_evacuation_keeps_root(self):
        server, root, data = self.evacuate_to_failing_host()
        self.assertEqual(data, self.read_image(root))

    def test_seed_004_forced_old_cleanup_is_blocked(self):
        server, root, data = self.evacuate_to_failing_host(
            force_old_cleanup=True)
        self.assertEqual(data, self.read_image(root))
        [decision] = self.decisions()
        self.assertEqual(('keep_root', 'refused'),
                         (decision['action'], decision['outcome']))
        self.assertEqual(root, decision['details']['image'])
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


class NovaAloneRbdTest(_Base):
    NOVA_CONF = harness.NOVA_ALONE_CONF

    def test_seed_004_failed_evacuation_keeps_root(self):
        # nova 34 cleans up only the disks spawn created.
        server, root, data = self.evacuate_to_failing_host()
        self.assertEqual(data, self.read_image(root))

    def test_seed_004_forced_old_cleanup_deletes_root(self):
        server, root, data = self.evacuate_to_failing_host(
            force_old_cleanup=True)
        self.assertIsNone(self.read_image(root))

    def test_genuine_delete_removes_root(self):
        self.start_compute(A)
        server, root, _ = self.boot_with_root()
        self._delete_server(server)
        self.assertIsNone(self.read_image(root))
