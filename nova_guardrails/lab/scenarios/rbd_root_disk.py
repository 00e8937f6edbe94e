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
"""Scenario of the rbd_root_disk guard: nova bug 1419785's evacuation case.

A server on host A with its root disk ``<uuid>_disk`` in a real Ceph pool
(a throwaway cluster, :mod:`nova_guardrails.lab.ceph`, started on first use
by :func:`ceph_cluster`); A goes down; the server is evacuated to C, where
creating the guest fails, and the failed spawn's clean-up removes the
instance's disks (the libvirt driver's ``_cleanup`` with
``destroy_disks``; forced here as before nova 22, or whenever spawn created
any disk: ``created_disks`` is one boolean). Nova alone deletes the root
disk from the shared pool; guarded, the image is kept byte-identical.
:func:`run_rbd_evacuation` returns a :class:`DiskOutcome` (``root_intact``
None: Ceph not installed, the scenario not run).
"""

import dataclasses
import os

import fixtures

from nova_guardrails.lab.scenarios import base
from nova_guardrails.lab.scenarios import host_identity

A, C = host_identity.A, host_identity.C
DOMAIN = base.DOMAIN
LIBVIRT_DRIVER = base.LIBVIRT_DRIVER
Scenario = base.Scenario

#: The cluster of this process (at most one), see :func:`ceph_cluster`.
_CLUSTER = []
# The temporary directory before nova's test fixtures point it at each test
# case's own (removed when the case ends).
_TMP = __import__('tempfile').gettempdir()


def ceph_cluster():
    """The lab's throwaway Ceph cluster, started on first use, stopped at
    exit.
    """
    if not _CLUSTER:
        import atexit
        from nova_guardrails.lab import ceph
        cluster = ceph.Cluster(base_dir=_TMP)
        cluster.start()
        atexit.register(cluster.stop)
        _CLUSTER.append(cluster)
    return _CLUSTER[0]


def use_rbd(test, cluster):
    test.flags(images_type='rbd', images_rbd_pool=cluster.pool,
               images_rbd_ceph_conf=cluster.conf, group='libvirt')


def evacuate_to_failing_host(test, write_image, force_old_cleanup=False):
    """A server on A with its root disk <uuid>_disk in the pool (written by
    ``write_image(name) -> bytes``, as spawn would); A goes down; it is
    evacuated to C, where creating the guest fails. Returns (server, root
    image name, its bytes).
    """
    test.start_compute(A)
    test.start_compute(C)
    [server] = host_identity.boot_on(test, A)
    root = '%s_disk' % server['id']
    data = write_image(root)
    test.stop_compute(A)
    host_identity.force_down(test, A)

    def guest_creation_fails(*args, **kwargs):
        from nova.tests.fixtures import libvirt as fakelibvirt
        raise fakelibvirt.make_libvirtError(
            fakelibvirt.libvirtError,
            'Cannot allocate memory (memory overcommit)',
            error_code=fakelibvirt.VIR_ERR_INTERNAL_ERROR)
    test.useFixture(fixtures.MonkeyPatch(DOMAIN + '.createWithFlags',
                                         guest_creation_fails))
    if force_old_cleanup:
        # Before nova 22, and still whenever spawn created any disk
        # (created_disks is one boolean for root, ephemeral and swap), the
        # failed spawn's clean-up includes the instance's rbd images.
        test.useFixture(fixtures.MonkeyPatch(
            LIBVIRT_DRIVER + '._create_image',
            lambda *args, **kwargs: (False, True)))
    test.admin_api.post_server_action(server['id'], {'evacuate': {}})
    test._wait_for_server_parameter(server, {'status': 'ERROR'})
    return server, root, data


@dataclasses.dataclass
class DiskOutcome:
    situation_text: str
    root_intact: bool | None
    decisions: list
    note: str | None = None

    def situation(self):
        return self.situation_text

    def cell(self, guarded):
        if self.root_intact is None:
            return 'not run: %s' % self.note
        text = ('root disk intact (byte-identical)' if self.root_intact
                else 'ROOT DISK DELETED from the pool')
        if guarded and self.decisions:
            text += '\nactions: %s' % ', '.join(
                d['action'] for d in self.decisions)
        return text

    @property
    def verdict(self):
        if self.root_intact is None:
            return 'not run'
        return 'data intact' if self.root_intact else 'data lost'

    def as_dict(self):
        return dataclasses.asdict(self) | {'verdict': self.verdict}


def run_rbd_evacuation(test, scenario):
    from nova_guardrails.lab import ceph
    situation = ('evacuation to a host where creating the guest fails; '
                 'the failed spawn cleans up its disks (created_disks, '
                 'forced); root disk in a real Ceph pool')
    lacking = ceph.missing()
    if lacking:
        return DiskOutcome(situation, None, [],
                           'Ceph not installed (%s)' % ', '.join(lacking))
    cluster = ceph_cluster()
    use_rbd(test, cluster)
    import rados
    import rbd
    client = rados.Rados(conffile=cluster.conf)
    client.connect(timeout=10)
    try:
        ioctx = client.open_ioctx(cluster.pool)

        def write_image(name, size=1024 * 1024):
            data = os.urandom(size)
            rbd.RBD().create(ioctx, name, size)
            with rbd.Image(ioctx, name) as image:
                image.write(data, 0)
            return data
        server, root, data = evacuate_to_failing_host(
            test, write_image, force_old_cleanup=True)
        intact = False
        if root in rbd.RBD().list(ioctx):
            with rbd.Image(ioctx, root) as image:
                intact = image.read(0, image.size()) == data
        ioctx.close()
    finally:
        client.shutdown()
    return DiskOutcome(situation, intact,
                       [d for d in base.decisions()
                        if d['guard'] == 'rbd_root_disk'])


SCENARIOS = [
    Scenario('evacuation_spawn_fails_rbd',
             'evacuation whose spawn fails, root disk on Ceph',
             'nova bug 1419785 (evacuation case)', run=run_rbd_evacuation,
             label='bug 1419785: evacuation spawn fails, root disk rbd'),
]
