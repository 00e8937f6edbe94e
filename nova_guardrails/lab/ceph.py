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
"""A throwaway single-node Ceph cluster on loopback, for tests and the lab.

One monitor and one OSD from Debian's packages (``ceph-mon``, ``ceph-osd``,
``ceph-common`` for the ``ceph``/``rbd`` CLIs nova calls), started in the
foreground under their own session, everything under one temporary
directory: configuration, monitor store, the OSD (``memstore``: data in the
OSD's memory), sockets, logs. No authentication, msgr2 only, on a free
127.0.0.1 port; pool size 1. :meth:`Cluster.stop` stops the OSD, then the
monitor, and removes the directory.

Python bindings: Debian's ``python3-rados``/``python3-rbd`` modules, built
for Debian's python3.11 (``/usr/lib/python3/dist-packages``); ``make ceph``
links them into the virtualenv (:func:`link_bindings`).
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

DIST_PACKAGES = '/usr/lib/python3/dist-packages'
BINARIES = ('ceph-mon', 'ceph-osd', 'monmaptool', 'ceph', 'rbd')


class CephUnavailable(Exception):
    """Ceph's binaries or Python bindings are not installed."""


def missing():
    """Names of what a cluster needs and this machine lacks."""
    lacking = [b for b in BINARIES if shutil.which(b) is None]
    for module in ('rados', 'rbd'):
        try:
            __import__(module)
        except ImportError:
            lacking.append('python module %s' % module)
    return lacking


def link_bindings(site_packages):
    """Link Debian's rados/rbd extension modules into ``site_packages``."""
    for name in ('rados', 'rbd'):
        for source in glob.glob(os.path.join(
                DIST_PACKAGES, '%s.cpython-311-*.so' % name)):
            target = os.path.join(site_packages, os.path.basename(source))
            if not os.path.exists(target):
                os.symlink(source, target)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


CONF_TEMPLATE = """[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{port}
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = false
ms bind msgr1 = false
ms bind ipv6 = false
public addr = 127.0.0.1
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
mon warn on pool no redundancy = false
mon mgr mkfs grace = 3600
paxos propose interval = 0.05
paxos min wait = 0.01
run dir = {dir}/run
admin socket = {dir}/run/$name.asok
log file = {dir}/log/$name.log
pid file = {dir}/run/$name.pid
[mon]
mon data = {dir}/mon/$name
[osd]
osd data = {dir}/osd/$name
osd objectstore = memstore
memstore device bytes = {memstore_bytes}
osd max object name len = 256
osd max object namespace len = 64
"""


class Cluster:
    """A single-node Ceph cluster; ``with Cluster() as c:`` or start/stop.

    :ivar conf: path of its ceph.conf (pass it as ``conffile``: rados does
        not read ``$CEPH_CONF``).
    :ivar pool: the rbd pool created at start (``vms``).
    :param base_dir: where its temporary directory goes (default: the
        temporary directory; a cluster that outlives one nova test case must
        not live in that test's own temporary directory).
    """

    def __init__(self, pool='vms', memstore_bytes=512 * 1024 * 1024,
                 base_dir=None):
        self.pool = pool
        self.base_dir = base_dir
        self.memstore_bytes = memstore_bytes
        self.dir = None
        self.conf = None
        self.processes = []

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _run(self, *args, timeout=60):
        return subprocess.run(args, check=True, capture_output=True,
                              text=True, timeout=timeout)

    def _daemon(self, *args):
        process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self.processes.append(process)
        return process

    def start(self, timeout=60):
        """Create and start the cluster, then the pool; seconds taken."""
        lacking = missing()
        if lacking:
            raise CephUnavailable('Ceph is not installed: missing %s (make '
                                  'ceph installs it)' % ', '.join(lacking))
        started = time.monotonic()
        self.dir = tempfile.mkdtemp(prefix='nova-guardrails-ceph-',
                                    dir=self.base_dir)
        for sub in ('run', 'log', 'mon', 'osd'):
            os.makedirs(os.path.join(self.dir, sub))
        fsid = _uuid()
        self.conf = os.path.join(self.dir, 'ceph.conf')
        with open(self.conf, 'w') as f:
            f.write(CONF_TEMPLATE.format(
                fsid=fsid, port=_free_port(), dir=self.dir,
                memstore_bytes=self.memstore_bytes))
        c = ['--conf', self.conf]
        monmap = os.path.join(self.dir, 'monmap')
        self._run('monmaptool', '--create', '--fsid', fsid, '--addv', 'a',
                  '[v2:%s]' % self._mon_addr(), monmap)
        self._run('ceph-mon', *c, '--mkfs', '-i', 'a', '--monmap', monmap)
        self._daemon('ceph-mon', *c, '-f', '-i', 'a')
        osd_uuid = _uuid()
        osd_id = self._run('ceph', *c, 'osd', 'new', osd_uuid,
                           timeout=timeout).stdout.strip()
        os.makedirs(os.path.join(self.dir, 'osd', 'osd.%s' % osd_id))
        self._run('ceph-osd', *c, '-i', osd_id, '--mkfs', '--osd-uuid',
                  osd_uuid)
        self._daemon('ceph-osd', *c, '-f', '-i', osd_id)
        self._run('ceph', *c, 'osd', 'pool', 'create', self.pool, '8',
                  timeout=timeout)
        self._run('rbd', *c, 'pool', 'init', self.pool, timeout=timeout)
        return time.monotonic() - started

    def _mon_addr(self):
        with open(self.conf) as f:
            for line in f:
                if line.startswith('mon host'):
                    return line.split('v2:', 1)[1].strip()

    def stop(self):
        """Stop the OSD, then the monitor; remove every file."""
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        self.processes = []
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def _uuid():
    import uuid
    return str(uuid.uuid4())
