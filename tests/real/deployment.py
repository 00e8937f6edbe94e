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
"""The real deployment tier: a small OpenStack on loopback, one directory.

:class:`Tier` starts, without systemd and as real processes:

* MariaDB (``mariadb-install-db``, then ``mariadbd --defaults-file``), its own
  socket and port; RabbitMQ with its own node name, epmd port, mnesia and log
  directories;
* Ceph: one mon and one memstore OSD (:class:`nova_guardrails.lab.ceph.
  Cluster`) plus a ceph-mgr (nova's ``RBDDriver.get_pool_info`` runs
  ``ceph df``, which lists no pool without one), pool ``vms`` for nova;
* two hypervisors, ``hv1`` and ``hv2``: each a libvirtd with its own
  virtlogd in its own mount and UTS namespace (``unshare``), where
  /run/libvirt, /var/lib/libvirt, /etc/libvirt, /var/log/libvirt and
  /var/cache/libvirt are directories of the tier's, and the hostname is
  hv1/hv2, so each is a hypervisor of its own with its own
  ``getHostname()``; their sockets in the tier's directory;
* placement, glance-api (file store), neutron's API (ML2, flat/local, no
  agent) and nova-api, each a WSGI application under gunicorn (one worker);
  nova-conductor and nova-scheduler from their console scripts; each
  service with its own configuration file. No keystone: nova-api's
  api-paste.ini without ``authtoken`` (clients send the headers keystone's
  middleware would set), placement ``noauth2``, neutron ``noauth``, glance's
  unauthenticated context; nova's clients of placement and neutron use
  keystoneauth's ``admin_token`` plugin;
* nova-compute processes on demand (:meth:`Tier.compute`), from
  ``launcher.py`` (nova's own ``main()``, with crash points read from the
  environment), with a nova.conf that has no ``[database]`` section: they
  reach the database through nova-conductor only, as on a real compute node.

Every process runs in a session of its own (``setsid``); its pid is
recorded, it is stopped through that pid (its process group), and its
output goes to a file under ``<dir>/log``. :meth:`Tier.stop` leaves no
process behind and checks it.

State is read by the tests only through real interfaces: nova's and
placement's HTTP APIs (:class:`Api`), libvirt (:meth:`Tier.libvirt`) and rbd
(:meth:`Tier.rbd_images` and friends).

nova-compute processes see this source tree first (``PYTHONPATH``), so a run
from the tree tests the current nova_guardrails; nova's loader still needs
the installed package for its ``nova/virt/guardrails.py`` shim and the guard
entry points (``make test-real`` installs it first, as ``make install``).
"""

import concurrent.futures
import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid

import requests

from nova_guardrails.lab import ceph as lab_ceph

SOURCE_TREE = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
#: nova's virtualenv: the one running the tests (make test-real).
NOVA_VENV = sys.prefix
GLANCE_VENV = os.path.join(NOVA_VENV, 'real-tier', 'glance')
NEUTRON_VENV = os.path.join(NOVA_VENV, 'real-tier', 'neutron')

RABBIT_BIN = '/usr/lib/rabbitmq/bin'
HYPERVISORS = ('hv1', 'hv2')
#: Directories each libvirtd gets its own copy of (bind mounts in its mount
#: namespace).
LIBVIRT_DIRS = ('/run/libvirt', '/var/lib/libvirt', '/etc/libvirt',
                '/var/log/libvirt', '/var/cache/libvirt')
#: The token nova's clients send to placement ("user:project"; admin).
PLACEMENT_TOKEN = 'admin:admin'
ADMIN_PROJECT = 'a0d6b0a4e1b44b6b9a4b3c3f7c1d2e01'

GUARDS = 'recovery_table, host_identity, revert_vif, rbd_root_disk'
#: The launcher's environment variables (launcher.py).
CRASH_VARIABLES = ('GUARDRAILS_CRASH_AT', 'GUARDRAILS_CRASH_AT_TASK_STATE',
                   'GUARDRAILS_RAISE_AT', 'GUARDRAILS_HOLD_AT')

BINARIES = ('mariadbd', 'mariadb-install-db', 'mariadb', 'epmd',
            'libvirtd', 'virtlogd', 'qemu-system-x86_64', 'qemu-img',
            'unshare', 'genisoimage', 'mkfs.vfat', 'ceph-mgr')


class TierError(Exception):
    """The tier could not be brought up (the message has the log tails)."""


def missing():
    """What this machine lacks for the tier (empty when nothing)."""
    lacking = [b for b in BINARIES if shutil.which(b) is None]
    if not os.path.exists(os.path.join(RABBIT_BIN, 'rabbitmq-server')):
        lacking.append(os.path.join(RABBIT_BIN, 'rabbitmq-server'))
    lacking += lab_ceph.missing()
    for module in ('libvirt', 'pymysql', 'gunicorn', 'nova.virt.guardrails'):
        try:
            __import__(module)
        except ImportError:
            lacking.append('python module %s in %s' % (module, NOVA_VENV))
    for venv, module in ((GLANCE_VENV, 'glance'), (NEUTRON_VENV, 'neutron')):
        if not os.path.exists(os.path.join(venv, '.deps-installed')):
            lacking.append('%s virtualenv %s' % (module, venv))
    import grp
    import pwd
    try:
        pwd.getpwnam('libvirt-qemu')
        grp.getgrnam('libvirt-qemu')
    except KeyError:
        lacking.append('user and group libvirt-qemu')
    if os.geteuid() != 0:
        lacking.append('root (mount namespaces of the hypervisors)')
    return lacking


def _quiet_libvirt():
    """libvirt-python prints every error to stderr unless told."""
    import libvirt
    libvirt.registerErrorHandler(lambda context, error: None, None)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(('127.0.0.1', port)) == 0


def pid_alive(pid):
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            state = f.read().rsplit(')', 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ('Z', 'X')


def group_members(pgid):
    """Live pids whose process group is ``pgid``."""
    members = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ('Z', 'X'):
            members.append(int(entry))
    return members


def service_updated_at(service):
    """A service of os-services: its ``updated_at`` as a naive UTC datetime
    (whole seconds), or None when it was never updated.
    """
    if not service.get('updated_at'):
        return None
    return datetime.datetime.fromisoformat(
        service['updated_at'].split('.')[0].rstrip('Z'))


def wait_for(predicate, timeout, what, interval=0.25, on_timeout=None):
    """Poll ``predicate()`` until it returns a true value; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = on_timeout() if on_timeout else ''
            raise TimeoutError('timed out after %ss waiting for %s%s' % (
                timeout, what, detail and '\n' + detail))
        time.sleep(interval)


def tail(path, lines=40):
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-lines:])
    except OSError as error:
        return '(%s)' % error


def ini(sections):
    """Text of an ini file from {section: {option: value}}."""
    out = []
    for section, options in sections.items():
        out.append('[%s]' % section)
        for key, value in options.items():
            out.append('%s = %s' % (key, value))
        out.append('')
    return '\n'.join(out)


class Process:
    """A daemon of the tier: its Popen, pid, log file."""

    def __init__(self, name, popen, log):
        self.name = name
        self.popen = popen
        self.pid = popen.pid
        self.log = log

    def alive(self):
        return self.popen.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Signal the process group (the pid: setsid), wait, SIGKILL the
        group if needed; reap. Any other member of the group is killed
        once the process is gone.
        """
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)

    def __repr__(self):
        return '<%s pid %d>' % (self.name, self.pid)


class Ceph(lab_ceph.Cluster):
    """The lab's single-node cluster plus a ceph-mgr, in the tier's
    directory.
    """

    def __init__(self, base_dir, memstore_bytes):
        super().__init__(pool='vms', memstore_bytes=memstore_bytes,
                         base_dir=base_dir)

    def start(self, timeout=120):
        super().start(timeout=timeout)
        mgr = os.path.join(self.dir, 'mgr', 'ceph-x')
        os.makedirs(mgr)
        self._daemon('ceph-mgr', '--conf', self.conf, '-f', '-i', 'x',
                     '--mgr-data', mgr)

        def pool_listed():
            result = subprocess.run(
                ['ceph', '--conf', self.conf, 'df', '--format', 'json'],
                capture_output=True, text=True, timeout=30)
            if result.returncode:
                return False
            pools = {p['name']: p['stats'] for p in
                     json.loads(result.stdout).get('pools', [])}
            return self.pool in pools and pools[self.pool]['max_avail'] > 0

        wait_for(pool_listed, timeout, 'ceph df to list pool %s (ceph-mgr)'
                 % self.pool, interval=1)

    def stop(self):
        # ceph-mgr, then the OSD, then the monitor (the lab stops in
        # reverse order of start); the directory is the tier's.
        self.dir, directory = None, self.dir
        super().stop()
        self.dir = directory


class Api:
    """An OpenStack HTTP API as a client without keystone sees it."""

    def __init__(self, url, headers):
        self.url = url.rstrip('/')
        self.session = requests.Session()
        self.session.headers.update(headers)

    def request(self, method, path, expect=None, **kwargs):
        kwargs.setdefault('timeout', 60)
        response = self.session.request(method, self.url + path, **kwargs)
        if expect is not None and response.status_code not in (
                (expect,) if isinstance(expect, int) else expect):
            raise AssertionError('%s %s: %s %s' % (
                method, path, response.status_code, response.text[:2000]))
        return response

    def get(self, path, **kwargs):
        return self.request('GET', path, expect=kwargs.pop('expect', 200),
                            **kwargs).json()

    def post(self, path, body, expect=(200, 201, 202, 204), **kwargs):
        response = self.request('POST', path, expect=expect, json=body,
                                **kwargs)
        return response.json() if response.content else None

    def put(self, path, body, expect=(200, 201, 202, 204), **kwargs):
        response = self.request('PUT', path, expect=expect, json=body,
                                **kwargs)
        return response.json() if response.content else None

    def delete(self, path, expect=(202, 204, 404), **kwargs):
        return self.request('DELETE', path, expect=expect, **kwargs)


class Compute:
    """One nova-compute process of the tier (see :meth:`Tier.compute`)."""

    def __init__(self, tier, host, hypervisor, guarded, conf, env, name):
        self.tier = tier
        self.host = host
        self.hypervisor = hypervisor
        self.guarded = guarded
        self.conf = conf
        self.env = env
        self.name = name
        self.process = None
        self.started_at = None
        self.report_path = os.path.join(tier.dir, 'state', host,
                                        'startup-report.json')
        self.marker = os.path.join(tier.dir, 'log', name + '.crash')

    @property
    def log(self):
        """Its log file ([DEFAULT] log_file)."""
        return os.path.join(self.tier.dir, 'log', self.name + '-app.log')

    @property
    def output(self):
        """Its standard output and error (what is printed before logging
        is set up, guru meditation reports).
        """
        return os.path.join(self.tier.dir, 'log', self.name + '.log')

    def tails(self, lines=40):
        return '--- %s\n%s--- %s\n%s' % (
            self.output, tail(self.output, lines // 2), self.log,
            tail(self.log, lines))

    def start(self, crash_points=True):
        """Start it (again: exactly the same nova.conf).

        :param crash_points: with the crash points and faults of its
            environment (launcher.py); a restart after a crash passes False.
        """
        assert self.process is None or not pid_alive(self.process.pid), (
            'nova-compute %s is still running' % self.name)
        env = dict(self.env)
        if not crash_points:
            for variable in CRASH_VARIABLES:
                env.pop(variable, None)
        for path in (self.report_path, self.marker):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.started_at = datetime.datetime.now(datetime.timezone.utc)
        # What this start logs begins here (one log file per name).
        self.log_offset = (os.path.getsize(self.log)
                           if os.path.exists(self.log) else 0)
        self.process = self.tier.spawn(
            self.name, [os.path.join(NOVA_VENV, 'bin', 'python'),
                        os.path.join(HERE, 'launcher.py'),
                        '--config-file', self.conf], env=env)
        return self

    def restart(self):
        """After a crash: the same configuration, no crash point, once
        the old pid is gone.
        """
        self.kill()
        return self.start(crash_points=False)

    def wait_up(self, timeout=120):
        """Until it is serving: its RPC server consumes its queue in
        RabbitMQ (nova starts it once init_host is done), its service is up
        in nova's API from a heartbeat of its own (:meth:`heartbeat_seen`)
        and its resource provider is in placement.
        """
        self.wait_serving(timeout)
        wait_for(self.heartbeat_seen, timeout,
                 'nova-compute %s up in os-services, from a heartbeat of '
                 'this start' % self.name, on_timeout=lambda: self.tails())
        wait_for(lambda: self.tier.resource_provider(self.hypervisor),
                 timeout, 'resource provider %s' % self.hypervisor)
        self.tier.discover_host(self.host)
        return self

    def heartbeat_seen(self):
        """Whether os-services shows it up from a heartbeat of this start.

        A service's state comes from its last heartbeat (``last_seen_up``)
        or, before its first one, from its creation; it is down once that
        is ``[DEFAULT] service_down_time`` (60 s) old
        (``nova.servicegroup.drivers.db.DbDriver.is_up``). Right after a
        kill and a restart, "up" is still the killed process's: the
        scheduler's ComputeFilter drops the host once that heartbeat is
        60 s old, whether or not this process has reported yet (a boot then
        fails with NoValidHost). This process's first heartbeat comes
        ``nova.servicegroup.api.INITIAL_REPORTING_DELAY`` (5 s) after its
        RPC server starts and saves the service record: ``updated_at``
        (whole seconds: MariaDB's DATETIME) is then at least the whole
        second after this start, which the killed process's last heartbeat,
        before this start, is not.
        """
        services = self.tier.services(self.host)
        updated = services and service_updated_at(services[0])
        since = (self.started_at + datetime.timedelta(seconds=1)).replace(
            tzinfo=None, microsecond=0)
        return bool(updated and services[0]['state'] == 'up' and
                    updated >= since)

    def wait_serving(self, timeout=120):
        """Until its RPC server consumes its queue (init_host done); no
        more (a nova-compute that cannot register its resource provider
        still gets here).
        """
        def consuming():
            if not self.process.alive():
                raise TierError('nova-compute %s exited with %s:\n%s' % (
                    self.name, self.process.popen.returncode,
                    self.tails()))
            return self.tier.queue('compute.%s' % self.host)[1] > 0
        wait_for(consuming, timeout, 'nova-compute %s to consume its RPC '
                 'queue' % self.name, on_timeout=lambda: self.tails())
        return self

    def errors(self):
        """The first line of each ERROR record of its log."""
        out = []
        for line in self.log_lines():
            parts = line.split(None, 4)
            if len(parts) == 5 and parts[3] == 'ERROR':
                text = parts[4].strip()[:160]
                if not out or out[-1][:60] != text[:60]:
                    out.append(text)
        return out

    def log_lines(self):
        """The lines of its log since its last start."""
        try:
            with open(self.log, 'rb') as f:
                f.seek(self.log_offset)
                return f.read().decode(errors='replace').splitlines()
        except FileNotFoundError:
            return []

    def wait_errors(self, text, timeout=60):
        """Until an ERROR or CRITICAL line of its log has ``text``; those
        lines.
        """
        def found():
            return [line for line in self.log_lines()
                    if text in line and (' ERROR ' in line or
                                         ' CRITICAL ' in line)]
        return wait_for(found, timeout, '%r in %s' % (text, self.log),
                        on_timeout=self.tails)

    def kill(self):
        """kill -9, then wait until the pid is gone (and its group)."""
        if self.process is not None:
            self.process.stop(signal.SIGKILL)
        return self

    def wait_exit(self, timeout=120):
        """Wait for the process to exit by itself; its exit status."""
        try:
            return self.process.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError('nova-compute %s did not exit:\n%s' % (
                self.name, self.tails()))

    def wait_marker(self, prefix, count=1, timeout=120):
        """Until ``count`` lines of the marker file start with ``prefix``
        (``hold``: held threads; the process must stay alive).
        """
        def reached():
            if not self.process.alive():
                raise TierError('nova-compute %s exited (%s):\n%s' % (
                    self.name, self.process.popen.returncode,
                    self.tails()))
            lines = [line for line in self.crash_marker().splitlines()
                     if line.startswith(prefix)]
            return lines if len(lines) >= count else None
        return wait_for(reached, timeout, '%d %r line(s) in %s' % (
            count, prefix, self.marker), on_timeout=lambda: self.tails())

    def wait_exit_or_none(self, timeout):
        """Its exit status, or None if it still runs after ``timeout``."""
        try:
            return self.process.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def crash_marker(self):
        try:
            with open(self.marker) as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def wait_crashed(self, timeout=120):
        """Until the process died at its crash point (the marker says)."""
        self.wait_exit(timeout)
        marker = self.crash_marker()
        assert marker.startswith('crash '), (
            'nova-compute %s exited (%s) without reaching its crash point:'
            '\n%s' % (self.name, self.process.popen.returncode,
                      self.tails()))
        self.process.stop(signal.SIGKILL)
        return marker

    def report(self):
        with open(self.report_path) as f:
            return json.load(f)

    def wait_report(self, timeout=120):
        def done():
            try:
                report = self.report()
            except (FileNotFoundError, ValueError):
                return None
            return report if report.get('finished_at') else None
        return wait_for(done, timeout, 'the start-up report of %s'
                        % self.name, on_timeout=lambda: self.tails())


class Tier:
    """The deployment; ``with Tier() as tier:`` or :meth:`start` /
    :meth:`stop`.
    """

    def __init__(self, base_dir=None, memstore_bytes=8 * 1024 ** 3,
                 keep=False):
        self.base_dir = base_dir
        self.memstore_bytes = memstore_bytes
        self.keep = keep
        self.dir = None
        self.processes = []
        self.recorded_pids = set()
        self.ceph = None
        self.ports = {}
        self.timings = {}
        self.computes = []
        self._lock = threading.Lock()
        self._discovered = set()
        self._stopped = False
        self.peak_rss_mb = 0

    # Processes --------------------------------------------------------

    def spawn(self, name, argv, env=None, cwd=None):
        log = os.path.join(self.dir, 'log', name + '.log')
        environment = dict(os.environ)
        environment.update(env or {})
        with open(log, 'ab') as out:
            popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, env=environment,
                cwd=cwd or self.dir, start_new_session=True)
        process = Process(name, popen, log)
        with self._lock:
            self.processes.append(process)
            self.recorded_pids.add(popen.pid)
        return process

    def run(self, argv, env=None, timeout=300, name=None):
        """Run a command to completion, output into a log file; raise with
        its tail when it fails.
        """
        name = name or os.path.basename(argv[0])
        log = os.path.join(self.dir, 'log', 'cmd-%s.log' % name)
        environment = dict(os.environ)
        environment.update(env or {})
        with open(log, 'ab') as out:
            out.write(('$ %s\n' % ' '.join(argv)).encode())
            out.flush()
            result = subprocess.run(argv, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    env=environment, cwd=self.dir,
                                    timeout=timeout, start_new_session=True)
        if result.returncode:
            raise TierError('%s exited with %d:\n%s' % (
                ' '.join(argv), result.returncode, tail(log)))

    def _timed(self, name, function, *args):
        started = time.monotonic()
        result = function(*args)
        self.timings[name] = round(time.monotonic() - started, 1)
        return result

    # Up and down --------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        started = time.monotonic()
        self.dir = tempfile.mkdtemp(prefix='nova-guardrails-real-',
                                    dir=self.base_dir)
        for sub in ('log', 'etc', 'state', 'instances', 'locks'):
            os.makedirs(os.path.join(self.dir, sub))
        import atexit
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException as error:
            message = self.failure_report()
            self.stop()
            if isinstance(error, Exception):
                raise TierError('the tier did not come up: %s\n%s' % (
                    error, message)) from error
            raise
        self.timings['up'] = round(time.monotonic() - started, 1)
        return self

    def _start(self):
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(self._timed, 'mariadb', self.start_mariadb),
                       pool.submit(self._timed, 'rabbitmq',
                                   self.start_rabbitmq),
                       pool.submit(self._timed, 'ceph', self.start_ceph)]
            futures += [pool.submit(self._timed, 'libvirtd-' + hv,
                                    self.start_libvirtd, hv)
                        for hv in HYPERVISORS]
            futures[0].result()
            self.write_configs()
            syncs = [pool.submit(self._timed, 'sync-' + name, function)
                     for name, function in (
                         ('nova', self.sync_nova),
                         ('placement', self.sync_placement),
                         ('glance', self.sync_glance),
                         ('neutron', self.sync_neutron))]
            for future in syncs:
                future.result()
            futures[1].result()
            self._timed('apis', self.start_control_plane)
            for future in futures:
                future.result()
        self._timed('resources', self.create_resources)
        self.sample_rss()

    def stop(self):
        """Stop every process (guests first), check none is left, remove
        the directory (unless ``keep``).
        """
        if self._stopped or self.dir is None:
            return
        self._stopped = True
        errors = []
        for compute in self.computes:
            with contextlib.suppress(Exception):
                compute.kill()
        # Guests: destroyed through their libvirtd, then their QEMU pids
        # (libvirt starts QEMU in a session of its own).
        qemu_pids = self.qemu_pids()
        for hv in HYPERVISORS:
            if not os.path.exists(os.path.join(
                    self.hypervisor_dir(hv), 'sock', 'libvirt-sock')):
                continue
            with contextlib.suppress(Exception):
                connection = self.libvirt(hv)
                for domain in connection.listAllDomains():
                    with contextlib.suppress(Exception):
                        if domain.isActive():
                            domain.destroy()
                connection.close()
        self.recorded_pids.update(qemu_pids)
        for pid in qemu_pids:
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        # Services in reverse order of start; ceph through its own stop
        # (its daemons are Popen objects of the lab's Cluster).
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception as error:
                errors.append('%s: %s' % (process, error))
        if self.ceph is not None:
            self.recorded_pids.update(p.pid for p in self.ceph.processes)
            try:
                self.ceph.stop()
            except Exception as error:
                errors.append('ceph: %s' % error)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.alive_pids():
            time.sleep(0.1)
        left = self.alive_pids()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        if left or errors:
            raise TierError('teardown left processes %s; errors %s' % (
                left, errors))

    def reset(self):
        """Between scenarios: every server deleted, every nova-compute
        killed, services of other hosts than the hypervisors' removed,
        allocations left in placement removed, every guest destroyed and
        undefined, the rbd pool and the instances directory emptied.

        Servers whose nova-compute still runs are deleted as a user would
        (a resized server's delete calls its source compute); the others by
        nova-api's local delete, their services forced down first.
        """
        import libvirt
        alive = {c.host for c in self.computes
                 if c.process is not None and c.process.alive()}
        servers = self.nova.get('/servers/detail?all_tenants=1')['servers']
        for server in servers:
            if server['OS-EXT-SRV-ATTR:host'] in alive:
                with contextlib.suppress(Exception):
                    self.delete_server(server['id'], timeout=60)
        for compute in self.computes:
            compute.kill()
        self.computes = []
        servers = self.nova.get('/servers/detail?all_tenants=1')['servers']
        try:
            if servers:
                for service in self.services():
                    if not service['forced_down']:
                        self.force_down(service['host'])
                for server in servers:
                    self.delete_server(server['id'])
        finally:
            for service in self.services():
                if service['host'] not in HYPERVISORS:
                    self.delete_service(service)
                elif service['forced_down']:
                    self.force_down(service['host'], False)
        for provider in self.placement.get('/resource_providers')[
                'resource_providers']:
            for consumer in self.placement.get(
                    '/resource_providers/%s/allocations' % provider['uuid'])[
                        'allocations']:
                self.placement.delete('/allocations/%s' % consumer)
        for hv in HYPERVISORS:
            connection = self.libvirt(hv)
            try:
                for domain in connection.listAllDomains():
                    if domain.isActive():
                        domain.destroy()
                    domain.undefineFlags(
                        libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                        libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                        libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            finally:
                connection.close()
        import rbd
        with self.rbd_ioctx() as io:
            for name in rbd.RBD().list(io):
                with rbd.Image(io, name) as image:
                    for snap in list(image.list_snaps()):
                        if image.is_protected_snap(snap['name']):
                            image.unprotect_snap(snap['name'])
                        image.remove_snap(snap['name'])
                rbd.RBD().remove(io, name)
        instances = os.path.join(self.dir, 'instances')
        for name in os.listdir(instances):
            if name != '_base':
                shutil.rmtree(os.path.join(instances, name),
                              ignore_errors=True)

    def delete_service(self, service):
        """DELETE /os-services/{id}. nova 34 answers 500 (ValueError: No
        such provider) when a compute node of the service never got its
        resource provider (a second node of hypervisor hv1 registered by a
        standby: placement refused the provider's name): the provider is
        created under another name, and the delete retried.
        """
        path = '/os-services/%s' % service['id']
        self.discover_host(service['host'])
        response = self.nova.request('DELETE', path)
        if response.status_code == 500 and 'ValueError' in response.text:
            nodes = self.nova.get('/os-hypervisors/detail')['hypervisors']
            known = {p['uuid'] for p in self.placement.get(
                '/resource_providers')['resource_providers']}
            for node in nodes:
                if node['service']['host'] == service['host'] and \
                        node['id'] not in known:
                    self.placement.post('/resource_providers', {
                        'uuid': node['id'],
                        'name': 'orphan-%s' % node['id']})
            response = self.nova.request('DELETE', path)
        if response.status_code not in (204, 404):
            raise AssertionError('DELETE %s: %s %s' % (
                path, response.status_code, response.text[:500]))
        # nova removed its host mapping with it.
        self._discovered.discard(service['host'])

    def sample_rss(self):
        """Sum of the RSS of every live process of the tier (the recorded
        process groups and the guests' QEMU), in MB; the peak is kept in
        :attr:`peak_rss_mb`.
        """
        pids = set(self.qemu_pids())
        for pid in list(self.recorded_pids) + [
                p.pid for p in (self.ceph.processes if self.ceph else [])]:
            pids.update(group_members(pid))
        total = 0
        for pid in pids:
            try:
                with open('/proc/%d/status' % pid) as f:
                    for line in f:
                        if line.startswith('VmRSS:'):
                            total += int(line.split()[1])
            except OSError:
                continue
        mb = total // 1024
        self.peak_rss_mb = max(self.peak_rss_mb, mb)
        return mb

    def alive_pids(self):
        """Recorded pids still alive, and live members of their process
        groups (each daemon runs in a session of its own whose process
        group id is its pid); after :meth:`stop`: none.
        """
        alive = {p for p in self.recorded_pids if pid_alive(p)}
        for pid in self.recorded_pids:
            alive.update(group_members(pid))
        return sorted(alive)

    def failure_report(self, lines=25):
        out = []
        logs = os.path.join(self.dir, 'log') if self.dir else None
        if logs and os.path.isdir(logs):
            for name in sorted(os.listdir(logs)):
                out.append('--- %s (tail)\n%s' % (
                    name, tail(os.path.join(logs, name), lines)))
        return '\n'.join(out)

    # MariaDB ------------------------------------------------------------

    def start_mariadb(self):
        base = os.path.join(self.dir, 'mariadb')
        os.makedirs(os.path.join(base, 'data'))
        port = self.ports['mariadb'] = free_port()
        self.mysql_socket = os.path.join(base, 'mysqld.sock')
        self.mysql_cnf = os.path.join(base, 'my.cnf')
        with open(self.mysql_cnf, 'w') as f:
            f.write(textwrap.dedent("""\
                [client]
                socket = {base}/mysqld.sock
                [mysqld]
                user = root
                datadir = {base}/data
                socket = {base}/mysqld.sock
                pid-file = {base}/mysqld.pid
                port = {port}
                bind-address = 127.0.0.1
                skip-name-resolve
                log-error = {log}/mariadb.err
                max_connections = 1000
                innodb_buffer_pool_size = 128M
                innodb_log_file_size = 64M
                innodb_flush_log_at_trx_commit = 0
                innodb_flush_method = nosync
                innodb_doublewrite = 0
                character-set-server = utf8mb4
                collation-server = utf8mb4_general_ci
                """).format(base=base, port=port,
                            log=os.path.join(self.dir, 'log')))
        self.run(['mariadb-install-db', '--defaults-file=' + self.mysql_cnf,
                  '--auth-root-authentication-method=socket',
                  '--skip-test-db'], name='mariadb-install-db')
        self.spawn('mariadbd', ['mariadbd',
                                '--defaults-file=' + self.mysql_cnf])
        wait_for(lambda: port_open(port), 60, 'MariaDB on port %d' % port,
                 on_timeout=lambda: tail(os.path.join(self.dir, 'log',
                                                      'mariadb.err')))
        self.db_password = uuid.uuid4().hex
        statements = ["CREATE USER 'openstack'@'127.0.0.1' IDENTIFIED BY "
                      "'%s'" % self.db_password]
        for database in ('nova_api', 'nova_cell0', 'nova', 'placement',
                         'glance', 'neutron'):
            statements.append('CREATE DATABASE %s' % database)
            statements.append("GRANT ALL ON %s.* TO 'openstack'@'127.0.0.1'"
                              % database)
        self.run(['mariadb', '--defaults-file=' + self.mysql_cnf, '-uroot',
                  '-e', '; '.join(statements)], name='mariadb-create')

    def db_url(self, database):
        return 'mysql+pymysql://openstack:%s@127.0.0.1:%d/%s?charset=utf8' % (
            self.db_password, self.ports['mariadb'], database)

    # RabbitMQ -----------------------------------------------------------

    def start_rabbitmq(self):
        base = os.path.join(self.dir, 'rabbitmq')
        for sub in ('mnesia', 'log', 'home'):
            os.makedirs(os.path.join(base, sub))
        port = self.ports['rabbitmq'] = free_port()
        epmd = self.ports['epmd'] = free_port()
        dist = self.ports['rabbitmq-dist'] = free_port()
        with open(os.path.join(base, 'rabbitmq.conf'), 'w') as f:
            f.write('listeners.tcp.default = 127.0.0.1:%d\n'
                    'disk_free_limit.absolute = 50MB\n'
                    'log.file.level = info\n' % port)
        with open(os.path.join(base, 'enabled_plugins'), 'w') as f:
            f.write('[].\n')
        with open(os.path.join(base, 'rabbitmq-env.conf'), 'w') as f:
            f.write('# the tier sets everything in the environment\n')
        node = 'tier%d@localhost' % os.getpid()
        env = {
            'HOME': os.path.join(base, 'home'),
            'ERL_EPMD_PORT': str(epmd),
            'ERL_EPMD_ADDRESS': '127.0.0.1',
            'RABBITMQ_NODENAME': node,
            'RABBITMQ_NODE_IP_ADDRESS': '127.0.0.1',
            'RABBITMQ_NODE_PORT': str(port),
            'RABBITMQ_DIST_PORT': str(dist),
            'RABBITMQ_CONF_ENV_FILE': os.path.join(base, 'rabbitmq-env.conf'),
            'RABBITMQ_CONFIG_FILE': os.path.join(base, 'rabbitmq.conf'),
            'RABBITMQ_ENABLED_PLUGINS_FILE': os.path.join(
                base, 'enabled_plugins'),
            'RABBITMQ_MNESIA_BASE': os.path.join(base, 'mnesia'),
            'RABBITMQ_LOG_BASE': os.path.join(base, 'log'),
            'RABBITMQ_PID_FILE': os.path.join(base, 'rabbitmq.pid'),
            'RABBITMQ_LOGS': os.path.join(self.dir, 'log',
                                          'rabbitmq-node.log'),
        }
        self.rabbit_env = env
        # epmd in the foreground, recorded, so that the Erlang VM finds it
        # on ERL_EPMD_PORT and does not start a daemon of its own.
        self.spawn('epmd', ['epmd', '-port', str(epmd),
                            '-address', '127.0.0.1'], env=env)
        wait_for(lambda: port_open(epmd), 30, 'epmd on port %d' % epmd)
        self.spawn('rabbitmq', [os.path.join(RABBIT_BIN, 'rabbitmq-server')],
                   env=env)
        wait_for(lambda: port_open(port), 120, 'RabbitMQ on port %d' % port,
                 interval=0.5, on_timeout=lambda: tail(os.path.join(
                     self.dir, 'log', 'rabbitmq-node.log')))

    def queue(self, name):
        """(messages ready, consumers) of queue ``name`` in RabbitMQ, (0, 0)
        when it does not exist (a passive declare, AMQP 0-9-1).
        """
        import amqp
        connection = amqp.Connection('127.0.0.1:%d' % self.ports['rabbitmq'],
                                     userid='guest', password='guest',
                                     connect_timeout=10)
        connection.connect()
        try:
            channel = connection.channel()
            try:
                _, messages, consumers = channel.queue_declare(
                    name, passive=True)
            except amqp.exceptions.NotFound:
                return 0, 0
            return messages, consumers
        finally:
            with contextlib.suppress(Exception):
                connection.close()

    @property
    def transport_url(self):
        return 'rabbit://guest:guest@127.0.0.1:%d/' % self.ports['rabbitmq']

    # Ceph ---------------------------------------------------------------

    def start_ceph(self):
        self.ceph = Ceph(self.dir, self.memstore_bytes)
        self.ceph.start()

    def rbd_ioctx(self):
        """A context manager: an rbd ioctx of the nova pool."""
        import rados

        @contextlib.contextmanager
        def ioctx():
            cluster = rados.Rados(conffile=self.ceph.conf)
            cluster.connect(timeout=30)
            try:
                with cluster.open_ioctx(self.ceph.pool) as io:
                    yield io
            finally:
                cluster.shutdown()
        return ioctx()

    def rbd_images(self, prefix=''):
        import rbd
        with self.rbd_ioctx() as io:
            return sorted(n for n in rbd.RBD().list(io)
                          if n.startswith(prefix))

    def rbd_write(self, name, offset, data):
        import rbd
        with self.rbd_ioctx() as io:
            with rbd.Image(io, name) as image:
                image.write(data, offset)
                image.flush()

    def rbd_read(self, name, offset, length):
        import rbd
        with self.rbd_ioctx() as io:
            with rbd.Image(io, name, read_only=True) as image:
                return image.read(offset, length)

    def rbd_size(self, name):
        import rbd
        with self.rbd_ioctx() as io:
            with rbd.Image(io, name, read_only=True) as image:
                return image.size()

    def rbd_snapshots(self, name):
        import rbd
        with self.rbd_ioctx() as io:
            with rbd.Image(io, name, read_only=True) as image:
                return sorted(s['name'] for s in image.list_snaps())

    # libvirtd -------------------------------------------------------------

    def hypervisor_dir(self, hv):
        return os.path.join(self.dir, hv)

    def libvirt_uri(self, hv):
        return 'qemu:///system?socket=%s' % os.path.join(
            self.hypervisor_dir(hv), 'sock', 'libvirt-sock')

    def start_libvirtd(self, hv):
        base = self.hypervisor_dir(hv)
        os.makedirs(os.path.join(base, 'sock'))
        mounts = []
        for path in LIBVIRT_DIRS:
            source = os.path.join(base, path.strip('/').replace('/', '-'))
            os.makedirs(source)
            # The mount point on the machine itself (an empty directory when
            # libvirt-daemon-system, which makes them, is not installed).
            os.makedirs(path, exist_ok=True)
            mounts.append((source, path))
        etc = os.path.join(base, 'etc-libvirt')
        for name in ('libvirt.conf', 'libvirt-admin.conf'):
            if os.path.exists(os.path.join('/etc/libvirt', name)):
                shutil.copy(os.path.join('/etc/libvirt', name), etc)
        with open(os.path.join(etc, 'libvirtd.conf'), 'w') as f:
            f.write(textwrap.dedent("""\
                unix_sock_dir = "{sock}"
                unix_sock_rw_perms = "0770"
                auth_unix_ro = "none"
                auth_unix_rw = "none"
                log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
                """).format(sock=os.path.join(base, 'sock')))
        with open(os.path.join(etc, 'qemu.conf'), 'w') as f:
            f.write(textwrap.dedent("""\
                user = "root"
                group = "root"
                security_driver = "none"
                remember_owner = 0
                """))
        with open(os.path.join(etc, 'virtlogd.conf'), 'w') as f:
            f.write('log_outputs = "3:file:/var/log/libvirt/virtlogd.log"\n')
        for sub in ('var-log-libvirt/qemu', 'var-lib-libvirt/qemu',
                    'var-cache-libvirt/qemu', 'run-libvirt/qemu'):
            os.makedirs(os.path.join(base, sub), exist_ok=True)
        script = ['set -e']
        script += ['mount --bind %s %s' % pair for pair in mounts]
        script += [
            'hostname %s' % hv,
            # Their pid files too: /run itself is the machine's.
            'virtlogd --pid-file %s/virtlogd.pidfile >%s/virtlogd.out 2>&1 &'
            % (base, base),
            'echo $! >%s/virtlogd.pid' % base,
            'exec libvirtd --pid-file %s/libvirtd.pidfile' % base,
        ]
        self.libvirtd_script = '\n'.join(script)
        process = self.spawn('libvirtd-' + hv, [
            'unshare', '--mount', '--uts', '--propagation', 'private', '--',
            'sh', '-c', self.libvirtd_script])
        socket_path = os.path.join(base, 'sock', 'libvirt-sock')

        def connected():
            if not process.alive():
                raise TierError('libvirtd %s exited:\n%s\n%s' % (
                    hv, tail(process.log), tail(os.path.join(
                        base, 'var-log-libvirt', 'libvirtd.log'))))
            if not os.path.exists(socket_path):
                return False
            import libvirt
            _quiet_libvirt()
            try:
                connection = libvirt.open(self.libvirt_uri(hv))
            except libvirt.libvirtError:
                return False
            try:
                # The QEMU capability probe (~8 s on the first connection).
                connection.getCapabilities()
                return connection.getHostname()
            finally:
                connection.close()

        hostname = wait_for(connected, 180, 'libvirtd %s' % hv, interval=0.5)
        if hostname != hv:
            raise TierError('libvirtd %s says its hostname is %s' % (
                hv, hostname))
        with open(os.path.join(base, 'virtlogd.pid')) as f:
            self.recorded_pids.add(int(f.read()))

    def libvirt(self, hv):
        """A libvirt connection to hypervisor ``hv`` (close it)."""
        import libvirt
        _quiet_libvirt()
        return libvirt.open(self.libvirt_uri(hv))

    def domains(self, hv):
        """{domain name: (state name, domain id)} on ``hv``."""
        import libvirt
        names = {libvirt.VIR_DOMAIN_RUNNING: 'running',
                 libvirt.VIR_DOMAIN_PAUSED: 'paused',
                 libvirt.VIR_DOMAIN_SHUTOFF: 'shutoff',
                 libvirt.VIR_DOMAIN_SHUTDOWN: 'shutdown',
                 libvirt.VIR_DOMAIN_CRASHED: 'crashed',
                 libvirt.VIR_DOMAIN_PMSUSPENDED: 'pmsuspended',
                 libvirt.VIR_DOMAIN_BLOCKED: 'blocked'}
        connection = self.libvirt(hv)
        try:
            out = {}
            for domain in connection.listAllDomains():
                state = domain.state()[0]
                out[domain.name()] = {
                    'state': names.get(state, str(state)),
                    'id': domain.ID(),
                    'uuid': domain.UUIDString(),
                    'managed_save': bool(domain.hasManagedSaveImage()),
                }
            return out
        finally:
            connection.close()

    def guest(self, hv, server_id):
        """The domain of a server on ``hv`` (by libvirt uuid = server id),
        or None.
        """
        for name, domain in self.domains(hv).items():
            if domain['uuid'] == server_id:
                return dict(domain, name=name)
        return None

    def power_off_guest(self, hv, server_id):
        """The guest powers itself off (as a guest OS that honoured an ACPI
        shutdown request would; the tier's guests have no OS, so libvirt
        stops them): its domain ends shut off, defined.
        """
        connection = self.libvirt(hv)
        try:
            domain = connection.lookupByUUIDString(server_id)
            if domain.isActive():
                domain.destroy()
        finally:
            connection.close()

    def qemu_pids(self):
        pids = []
        for hv in HYPERVISORS:
            run = os.path.join(self.hypervisor_dir(hv), 'run-libvirt', 'qemu')
            if not os.path.isdir(run):
                continue
            for name in os.listdir(run):
                if name.endswith('.pid'):
                    with contextlib.suppress(OSError, ValueError):
                        with open(os.path.join(run, name)) as f:
                            pids.append(int(f.read().strip()))
        return pids

    # Configuration --------------------------------------------------------

    def write_configs(self):
        for name in ('placement', 'glance', 'neutron', 'nova-api'):
            self.ports[name] = free_port()
        etc = os.path.join(self.dir, 'etc')
        logs = os.path.join(self.dir, 'log')
        self.placement_url = 'http://127.0.0.1:%d' % self.ports['placement']
        self.glance_url = 'http://127.0.0.1:%d' % self.ports['glance']
        self.neutron_url = 'http://127.0.0.1:%d' % self.ports['neutron']
        self.nova_url = 'http://127.0.0.1:%d' % self.ports['nova-api']

        # placement
        os.makedirs(os.path.join(etc, 'placement'))
        with open(os.path.join(etc, 'placement', 'placement.conf'), 'w') as f:
            f.write(ini({
                'DEFAULT': {'log_file': os.path.join(logs,
                                                     'placement-app.log')},
                'api': {'auth_strategy': 'noauth2'},
                'placement_database': {
                    'connection': self.db_url('placement')},
            }))

        # glance: file store, unauthenticated context (the default paste
        # pipeline), legacy policy defaults (else 403 on image list).
        glance = os.path.join(etc, 'glance')
        os.makedirs(glance)
        shutil.copy(os.path.join(GLANCE_VENV, 'etc', 'glance',
                                 'glance-api-paste.ini'), glance)
        for sub in ('images', 'staging', 'tasks'):
            os.makedirs(os.path.join(self.dir, 'glance', sub))
        self.glance_conf = os.path.join(glance, 'glance-api.conf')
        with open(self.glance_conf, 'w') as f:
            f.write(ini({
                'DEFAULT': {
                    'log_file': os.path.join(logs, 'glance-app.log'),
                    'enabled_backends': 'file:file',
                    'worker_self_reference_url': self.glance_url,
                    'enabled_import_methods': '[]',
                },
                'database': {'connection': self.db_url('glance')},
                'glance_store': {'default_backend': 'file'},
                'file': {'filesystem_store_datadir': os.path.join(
                    self.dir, 'glance', 'images')},
                'os_glance_staging_store': {
                    'filesystem_store_datadir': os.path.join(
                        self.dir, 'glance', 'staging')},
                'os_glance_tasks_store': {
                    'filesystem_store_datadir': os.path.join(
                        self.dir, 'glance', 'tasks')},
                'paste_deploy': {'config_file': os.path.join(
                    glance, 'glance-api-paste.ini')},
                'oslo_policy': {'enforce_new_defaults': 'false',
                                'enforce_scope': 'false'},
                'oslo_concurrency': {'lock_path': os.path.join(
                    self.dir, 'locks')},
            }))

        # neutron: ML2, type drivers local and flat, no mechanism driver,
        # no agent, no notifications to nova.
        neutron = os.path.join(etc, 'neutron')
        os.makedirs(neutron)
        self.neutron_confs = [os.path.join(neutron, 'neutron.conf'),
                              os.path.join(neutron, 'ml2_conf.ini')]
        with open(self.neutron_confs[0], 'w') as f:
            f.write(ini({
                'DEFAULT': {
                    'log_file': os.path.join(logs, 'neutron-app.log'),
                    'core_plugin': 'ml2',
                    'service_plugins': '',
                    'auth_strategy': 'noauth',
                    'transport_url': self.transport_url,
                    'api_paste_config': os.path.join(
                        NEUTRON_VENV, 'etc', 'neutron', 'api-paste.ini'),
                    'notify_nova_on_port_status_changes': 'false',
                    'notify_nova_on_port_data_changes': 'false',
                    'state_path': os.path.join(self.dir, 'state'),
                },
                'database': {'connection': self.db_url('neutron')},
                'oslo_concurrency': {'lock_path': os.path.join(
                    self.dir, 'locks')},
            }))
        with open(self.neutron_confs[1], 'w') as f:
            f.write(ini({
                'ml2': {'type_drivers': 'local,flat',
                        'tenant_network_types': 'local',
                        'mechanism_drivers': '',
                        'extension_drivers': ''},
                'ml2_type_flat': {'flat_networks': '*'},
            }))

        # nova: api-paste.ini without authtoken; one file per service.
        nova = os.path.join(etc, 'nova')
        os.makedirs(nova)
        with open(os.path.join(NOVA_VENV, 'etc', 'nova',
                               'api-paste.ini')) as f:
            paste = f.read()
        paste = paste.replace(' authtoken keystonecontext ',
                              ' keystonecontext ')
        assert ' authtoken ' not in paste
        self.api_paste = os.path.join(nova, 'api-paste.ini')
        with open(self.api_paste, 'w') as f:
            f.write(paste)
        common = self.nova_common()
        control = dict(common)
        control['database'] = {'connection': self.db_url('nova')}
        control['api_database'] = {'connection': self.db_url('nova_api')}
        for service in ('nova-api', 'nova-conductor', 'nova-scheduler',
                        'nova-manage'):
            sections = {k: dict(v) for k, v in control.items()}
            sections['DEFAULT']['log_file'] = os.path.join(
                logs, '%s-app.log' % service)
            sections['DEFAULT']['state_path'] = os.path.join(
                self.dir, 'state', service)
            if service == 'nova-api':
                sections['wsgi'] = {'api_paste_config': self.api_paste}
            with open(os.path.join(nova, service + '.conf'), 'w') as f:
                f.write(ini(sections))

    def nova_common(self):
        """Sections every nova service's nova.conf has (no database)."""
        return {
            'DEFAULT': {
                'transport_url': self.transport_url,
                'my_ip': '127.0.0.1',
                'debug': 'true',
                # The guests have no OS: an ACPI power-off is never
                # honoured, so every clean shutdown (rescue, resize, stop)
                # would wait the whole timeout (60 s by default).
                'shutdown_timeout': '3',
            },
            'api': {'auth_strategy': 'keystone'},
            'conductor': {'workers': '1'},
            'scheduler': {'workers': '1'},
            'placement': {'auth_type': 'admin_token',
                          'token': PLACEMENT_TOKEN,
                          'endpoint': self.placement_url},
            'neutron': {'auth_type': 'admin_token', 'token': 'admin',
                        'endpoint': self.neutron_url,
                        'endpoint_override': self.neutron_url},
            'glance': {'api_servers': self.glance_url},
            'oslo_concurrency': {'lock_path': os.path.join(self.dir,
                                                           'locks')},
            'vnc': {'enabled': 'false'},
            'cinder': {'os_region_name': 'RegionOne'},
            'service_user': {'send_service_user_token': 'false'},
        }

    def nova_conf(self, service):
        return os.path.join(self.dir, 'etc', 'nova', service + '.conf')

    # Schema ---------------------------------------------------------------

    def nova_bin(self, name):
        return os.path.join(NOVA_VENV, 'bin', name)

    def sync_nova(self):
        manage = [self.nova_bin('nova-manage'), '--config-file',
                  self.nova_conf('nova-manage')]
        self.run(manage + ['api_db', 'sync'], name='nova-manage-api_db')
        self.run(manage + ['cell_v2', 'map_cell0', '--database_connection',
                           self.db_url('nova_cell0')],
                 name='nova-manage-map_cell0')
        self.run(manage + ['cell_v2', 'create_cell', '--name', 'cell1',
                           '--verbose'], name='nova-manage-create_cell')
        self.run(manage + ['db', 'sync'], name='nova-manage-db')

    def sync_placement(self):
        self.run([self.nova_bin('placement-manage'), '--config-file',
                  os.path.join(self.dir, 'etc', 'placement',
                               'placement.conf'), 'db', 'sync'],
                 name='placement-manage')

    def sync_glance(self):
        self.run([os.path.join(GLANCE_VENV, 'bin', 'glance-manage'),
                  '--config-file', self.glance_conf, 'db_sync'],
                 name='glance-manage')

    def sync_neutron(self):
        argv = [os.path.join(NEUTRON_VENV, 'bin', 'neutron-db-manage')]
        for conf in self.neutron_confs:
            argv += ['--config-file', conf]
        self.run(argv + ['upgrade', 'heads'], name='neutron-db-manage')

    # Control plane ----------------------------------------------------

    def serve(self, name, venv, app, prog, env):
        return self.spawn(name, [
            os.path.join(venv, 'bin', 'python'),
            os.path.join(HERE, 'serve.py'),
            '127.0.0.1:%d' % self.ports[name], app, prog], env=env)

    def start_control_plane(self):
        etc = os.path.join(self.dir, 'etc')
        apis = [
            self.serve('placement', NOVA_VENV,
                       'placement.wsgi.api:application',
                       'placement-api', {'OS_PLACEMENT_CONFIG_DIR':
                                         os.path.join(etc, 'placement')}),
            self.serve('glance', GLANCE_VENV, 'glance.wsgi.api:application',
                       'glance-api', {'OS_GLANCE_CONFIG_DIR':
                                      os.path.join(etc, 'glance')}),
            self.serve('neutron', NEUTRON_VENV,
                       'neutron.wsgi.api:application', 'neutron-api', {
                           'OS_NEUTRON_CONFIG_DIR':
                               os.path.join(etc, 'neutron'),
                           'OS_NEUTRON_CONFIG_FILES':
                               'neutron.conf;ml2_conf.ini'}),
            self.serve('nova-api', NOVA_VENV,
                       'nova.wsgi.osapi_compute:application',
                       'nova-api-os-compute', {
                           'OS_NOVA_CONFIG_DIR': os.path.join(etc, 'nova'),
                           # The first one is the paste file (nova's
                           # wsgi_app loads the application from it).
                           'OS_NOVA_CONFIG_FILES':
                               'api-paste.ini;nova-api.conf'}),
        ]
        for binary in ('nova-conductor', 'nova-scheduler'):
            self.spawn(binary, [self.nova_bin(binary), '--config-file',
                                self.nova_conf(binary)])
        self.placement = Api(self.placement_url, {
            'X-Auth-Token': PLACEMENT_TOKEN,
            'OpenStack-API-Version': 'placement latest'})
        self.glance = Api(self.glance_url, {'X-Auth-Token': 'admin'})
        self.neutron = Api(self.neutron_url, {
            'X-Auth-Token': 'admin', 'X-Project-Id': ADMIN_PROJECT,
            'X-User-Id': 'admin', 'X-Roles': 'admin,member,reader'})
        self.nova = Api(self.nova_url + '/v2.1', {
            'X-Auth-Token': 'admin', 'X-User-Id': 'admin',
            'X-Project-Id': ADMIN_PROJECT,
            'X-Roles': 'admin,member,reader',
            'X-OpenStack-Nova-API-Version': 'latest'})

        def answers(api, path, process):
            def ready():
                if not process.alive():
                    raise TierError('%s exited:\n%s' % (
                        process.name, tail(process.log)))
                try:
                    return api.request('GET', path, timeout=5).status_code \
                        < 500
                except requests.RequestException:
                    return False
            return ready

        for api, path, process in ((self.placement, '/', apis[0]),
                                   (self.glance, '/v2/images', apis[1]),
                                   (self.neutron, '/v2.0/networks', apis[2]),
                                   (self.nova, '/flavors', apis[3])):
            wait_for(answers(api, path, process), 240, process.name,
                     interval=0.5, on_timeout=lambda p=process: tail(p.log))
        # The newest microversion this nova has, explicit in every request.
        self.nova_microversion = self.nova.get('/')['version']['version']
        self.nova.session.headers['X-OpenStack-Nova-API-Version'] = \
            self.nova_microversion
        # neutron answers 500 to the first port list until another request
        # configured its ORM mappers: warm it up.
        self.neutron.get('/v2.0/networks')
        self.neutron.get('/v2.0/ports')
        # conductor and scheduler are up when they report up.
        wait_for(lambda: {s['binary'] for s in self.nova.get(
            '/os-services')['services'] if s['state'] == 'up'} >= {
                'nova-conductor', 'nova-scheduler'}, 120,
            'nova-conductor and nova-scheduler up', interval=0.5)

    # Resources ------------------------------------------------------------

    def create_resources(self):
        """The image (raw, a few MB: the guest idles in SeaBIOS) and the
        flavors.
        """
        path = os.path.join(self.dir, 'tiny.raw')
        self.run(['qemu-img', 'create', '-f', 'raw', path, '4M'],
                 name='qemu-img')
        image = self.glance.request('POST', '/v2/images', expect=201, json={
            # Default visibility: publicizing needs role admin, which
            # glance's unauthenticated context does not have (it is
            # is_admin, so every project's nova reads the image).
            'name': 'tiny', 'disk_format': 'raw',
            'container_format': 'bare'}).json()
        with open(path, 'rb') as f:
            self.glance.request('PUT', '/v2/images/%s/file' % image['id'],
                                expect=204, data=f, headers={
                                    'Content-Type':
                                        'application/octet-stream'})
        self.image_id = image['id']
        self.flavors = {}
        for name, ram, disk, ephemeral, swap in (
                ('tiny', 64, 1, 0, 0),
                ('tiny.big', 96, 1, 0, 0),
                ('tiny.disks', 64, 1, 1, 16)):
            flavor = self.nova.post('/flavors', {'flavor': {
                'name': name, 'ram': ram, 'vcpus': 1, 'disk': disk,
                'OS-FLV-EXT-DATA:ephemeral': ephemeral,
                'swap': swap}})['flavor']
            self.flavors[name] = flavor['id']

    # nova-compute -----------------------------------------------------------

    def compute(self, hypervisor='hv1', host=None, guarded=True, env=None,
                conf=None, name=None, guards=GUARDS):
        """A nova-compute over ``hypervisor`` (not started: ``.start()``).

        :param host: its ``[DEFAULT] host`` (default: the hypervisor's name).
        :param guarded: ``compute_driver = guardrails.GuardrailsDriver`` with
            the README's guards; else ``libvirt.LibvirtDriver`` (nova alone).
        :param env: extra environment (crash points, see launcher.py).
        :param conf: {section: {option: value}} merged over the defaults.
        """
        host = host or hypervisor
        name = name or 'nova-compute-%s%s' % (
            host, '' if guarded else '-alone')
        # /var/lib/nova of the host: the same whether or not the host runs
        # nova-guardrails (nova's compute_id file is there).
        state = os.path.join(self.dir, 'state', host)
        os.makedirs(state, exist_ok=True)
        sections = {k: dict(v) for k, v in self.nova_common().items()}
        sections['DEFAULT'].update({
            'host': host,
            'state_path': state,
            # One instances directory for every compute: the tier's
            # computes share 127.0.0.1, so nova takes their instance
            # directories for shared storage (_is_path_shared_with) and
            # copies nothing over ssh; the disks themselves are in Ceph.
            'instances_path': os.path.join(self.dir, 'instances'),
            'log_file': os.path.join(self.dir, 'log', name + '-app.log'),
            'compute_driver': ('guardrails.GuardrailsDriver' if guarded
                               else 'libvirt.LibvirtDriver'),
            'mkisofs_cmd': 'genisoimage',
            'heal_instance_info_cache_interval': '-1',
        })
        sections['libvirt'] = {
            'virt_type': 'qemu',
            'connection_uri': self.libvirt_uri(hypervisor),
            'images_type': 'rbd',
            'images_rbd_pool': self.ceph.pool,
            'images_rbd_ceph_conf': self.ceph.conf,
            # No rbd_user: the cluster has no cephx (an empty value would
            # make nova write an <auth> element without a username).
            'wait_soft_reboot_seconds': '3',
        }
        helper = '%s --config-file %s' % (
            self.nova_bin('privsep-helper'), '{conf}')
        sections['nova_sys_admin'] = {'helper_command': helper}
        sections['privsep_osbrick'] = {'helper_command': helper}
        sections['vif_plug_ovs_privileged'] = {'helper_command': helper}
        sections['vif_plug_linux_bridge_privileged'] = {
            'helper_command': helper}
        if guarded:
            sections['guardrails'] = {
                'driver': 'libvirt.LibvirtDriver',
                'enabled_guards': guards,
                'report_path': os.path.join(state, 'startup-report.json'),
            }
        for section, options in (conf or {}).items():
            sections.setdefault(section, {}).update(options)
        path = os.path.join(self.dir, 'etc', 'nova', name + '.conf')
        text = ini(sections).replace('{conf}', path)
        with open(path, 'w') as f:
            f.write(text)
        environment = {
            # This source tree first: a run from the tree tests the current
            # nova_guardrails (make test-real installs the package too).
            'PYTHONPATH': SOURCE_TREE,
            'GUARDRAILS_CRASH_MARKER': os.path.join(self.dir, 'log',
                                                    name + '.crash'),
        }
        environment.update(env or {})
        compute = Compute(self, host, hypervisor, guarded, path, environment,
                          name)
        self.computes.append(compute)
        return compute

    @staticmethod
    def wait_for(predicate, timeout, what, raise_on_timeout=True):
        """:func:`wait_for`; with ``raise_on_timeout=False``, False at the
        timeout instead of an error.
        """
        try:
            return wait_for(predicate, timeout, what, interval=0.5)
        except TimeoutError:
            if raise_on_timeout:
                raise
            return False

    def settle(self, seconds):
        """Let the processes run (periodic tasks, queued requests)."""
        time.sleep(seconds)

    # Reading state through the APIs ---------------------------------------

    def services(self, host=None, binary='nova-compute'):
        query = '?binary=%s' % binary + ('&host=%s' % host if host else '')
        return self.nova.get('/os-services' + query)['services']

    def service_state(self, host):
        services = self.services(host)
        return services[0]['state'] if services else None

    def resource_provider(self, name):
        providers = self.placement.get(
            '/resource_providers?name=%s' % name)['resource_providers']
        return providers[0] if providers else None

    def discover_host(self, host):
        """Map a new compute host to cell1 (nova-manage, once per host)."""
        if host in self._discovered:
            return
        self.run([self.nova_bin('nova-manage'), '--config-file',
                  self.nova_conf('nova-manage'), 'cell_v2', 'discover_hosts',
                  '--verbose'], name='nova-manage-discover_hosts')
        self._discovered.add(host)

    def force_down(self, host, down=True):
        """PUT /os-services/{id} forced_down (an evacuation's source)."""
        [service] = self.services(host)
        self.nova.put('/os-services/%s' % service['id'],
                      {'forced_down': down})

    def migrations(self, server_id):
        return self.nova.get('/os-migrations?instance_uuid=%s'
                             % server_id)['migrations']

    def allocations(self, consumer):
        return self.placement.get('/allocations/%s' % consumer)[
            'allocations']

    def server(self, server_id):
        return self.nova.get('/servers/%s' % server_id)['server']

    def server_state(self, server_id):
        server = self.server(server_id)
        return {
            'status': server['status'],
            'vm_state': server['OS-EXT-STS:vm_state'],
            'task_state': server['OS-EXT-STS:task_state'],
            'power_state': server['OS-EXT-STS:power_state'],
            'host': server['OS-EXT-SRV-ATTR:host'],
            'flavor': server['flavor'].get('original_name'),
        }

    def boot(self, name, host='hv1', flavor='tiny', **extra):
        body = {'server': dict({
            'name': name, 'imageRef': self.image_id,
            'flavorRef': self.flavors[flavor], 'networks': 'none',
            'host': host}, **extra)}
        server = self.nova.post('/servers', body)['server']
        return self.wait_server(server['id'], 'ACTIVE')

    def scheduling_of(self, server_id):
        """What nova-scheduler logged while it scheduled ``server_id``: the
        lines of its request (filters, hosts, claims), for a failure's
        message (the tier's directory is gone after the run).
        """
        path = os.path.join(self.dir or '', 'log', 'nova-scheduler-app.log')
        try:
            with open(path, errors='replace') as f:
                lines = f.read().splitlines()
        except OSError as error:
            return '\n(no scheduler log: %s)' % error
        requests = set()
        for line in lines:
            if 'Starting to schedule' in line and server_id in line:
                requests.update(re.findall(r'req-[0-9a-f-]{36}', line))
        picked = [
            # Without the request's context and the source location.
            re.sub(r' \S+ /\S+\.py:\d+$', '',
                   re.sub(r' \[[^]]*req-[^]]*\]', '', line))[11:400]
            for line in lines
            if any(r in line for r in requests) and
            'oslo_db' not in line and 'lockutils' not in line]
        return '\nnova-scheduler, request(s) %s:\n%s' % (
            ', '.join(sorted(requests)) or 'not found',
            '\n'.join(picked[-60:]))

    def wait_server(self, server_id, status, task_state=None, timeout=120):
        def reached():
            server = self.server(server_id)
            if server['status'] == 'ERROR' and status != 'ERROR':
                raise AssertionError('server %s went to ERROR: %s%s' % (
                    server_id, server.get('fault'),
                    self.scheduling_of(server_id)))
            return server if (server['status'] == status and
                              server['OS-EXT-STS:task_state'] == task_state
                              ) else None
        return wait_for(reached, timeout, 'server %s %s/%s' % (
            server_id, status, task_state), interval=0.5,
            on_timeout=lambda: json.dumps(self.server_state(server_id)))

    def action(self, server_id, body, expect=(200, 202)):
        return self.nova.request('POST', '/servers/%s/action' % server_id,
                                 expect=expect, json=body)

    def actions(self, server_id):
        """The server's instance actions, each with its events."""
        out = []
        for action in self.nova.get('/servers/%s/os-instance-actions'
                                    % server_id)['instanceActions']:
            detail = self.nova.get('/servers/%s/os-instance-actions/%s' % (
                server_id, action['request_id']))['instanceAction']
            out.append(detail)
        return out

    def delete_server(self, server_id, timeout=120):
        self.nova.delete('/servers/%s' % server_id)

        def gone():
            response = self.nova.request('GET', '/servers/%s' % server_id)
            return response.status_code == 404
        wait_for(gone, timeout, 'server %s deleted' % server_id,
                 interval=0.5)
