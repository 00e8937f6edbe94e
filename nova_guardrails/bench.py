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
"""``nova-guardrails bench``: what the guards cost a nova-compute start-up.

For each size (instances on one host) the benchmark runs real nova through
the lab harness (nova's functional fixtures, libvirt driver over
fakelibvirt, sqlite, in-process placement), boots one server through the
API, clones its records and its guest up to the size, then restarts
nova-compute alternately nova alone (``compute_driver =
libvirt.LibvirtDriver``) and guarded (the harness's guarded nova.conf, every
default guard): one untimed warm-up restart of each, then ``restarts``
timed pairs. Before each restart the transitional mix is set again (the
same instances, the same task_states, a guest in the matching state, an
instance action with its compute event started: interrupted on this host),
so every restart sees the same host. A last guarded restart with every
instance stable gives the guards' round trips of a stable host.

Per restart it records the wall time of ``ComputeManager.init_host`` as
``Service.start`` runs it (the guards' wrappers included) and, in that
window, the SQL statements (nova's databases and placement's), the guards'
round trips to nova-conductor (the harness's ``NoDirectDatabaseAccess``
count), placement requests (``SchedulerReportClient`` get/put/post/delete)
and neutron API calls (``nova.network.neutron.API``, outermost calls), and
checks that ``_init_instance`` ran for every instance and that no instance
was left in a transitional task_state.
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import threading
import time
import unittest

HOST = 'compute1'
#: Transitional task_states of the mix, cycled over the chosen instances;
#: each with vm_state active and a running guest (the operation was
#: interrupted before it changed the guest), and the instance action and
#: compute event nova records when the operation starts on a compute.
MIX = (('rebooting', 'reboot', 'compute_reboot_instance'),
       ('reboot_started', 'reboot', 'compute_reboot_instance'),
       ('powering-off', 'stop', 'compute_stop_instance'))
ALONE, GUARDED = 'nova alone', 'guarded'
#: Targets: what a guarded start-up may cost over nova alone.
MAX_RATIO = 1.05
TARGET_SIZE = 1000
#: ``nova-guardrails audit`` of a TARGET_SIZE host: seconds, beyond
#: interpreter start-up (the time of :func:`nova_guardrails.audit.rows`).
MAX_AUDIT_SECONDS = 1.0
#: Timed audits per size, and the queued_grace_seconds they run with.
AUDIT_RUNS = 3
AUDIT_GRACE = 120


class BenchError(Exception):
    """The benchmark could not measure what it claims (fails loudly)."""


def transitional_count(instances, percent):
    return int(round(instances * percent / 100.0))


class _Window:
    """Counters active while one init_host runs."""

    def __init__(self):
        self.lock = threading.Lock()
        self.active = False
        self.reset()

    def reset(self):
        self.sql_nova = 0
        self.sql_placement = 0
        self.placement = 0
        self.neutron = 0
        self.init_instance = set()


def _make_case(harness, size, restarts, percent, window, results):
    """A GuardrailsTestBase case running one size."""
    import fixtures
    from nova.compute import power_state
    from nova import context as nova_context
    from nova import objects
    from nova.tests.fixtures import libvirt as fakelibvirt
    from oslo_utils import uuidutils
    import sqlalchemy
    from sqlalchemy import event

    class BenchCase(harness.GuardrailsTestBase):
        NOVA_CONF = harness.GUARDED_NOVA_CONF

        def _setup_services(self):
            super()._setup_services()
            # The benchmark itself writes records outside nova-compute.
            self.db_access.EXEMPT = (
                harness.NoDirectDatabaseAccess.EXEMPT +
                ('nova_guardrails/bench.py',))

        def runTest(self):
            self.ctxt = nova_context.get_admin_context()
            self._placement_engine_now = None
            self._instrument()
            self.start_compute(HOST)
            server = self._create_server(networks='none', host=HOST)
            self.uuids = [server['id']] + self._clone(server['id'], size - 1)
            step = len(self.uuids) / max(1, transitional_count(
                size, percent)) if percent else 0
            self.transitional = [
                self.uuids[int(i * step)]
                for i in range(transitional_count(size, percent))]
            runs = []
            for mode in (ALONE, GUARDED):  # warm-up, not recorded
                self._restart(mode, reset=True)
            for _ in range(restarts):
                for mode in (ALONE, GUARDED):
                    runs.append(self._restart(mode, reset=True))
            stable = self._restart(GUARDED, reset=False)
            results.update(runs=runs, stable=stable,
                           transitional=len(self.transitional),
                           audit=self._audit())

        def _audit(self):
            """``nova-guardrails audit`` of the host with the mix set:
            :func:`nova_guardrails.audit.rows` as its ``main`` calls it
            (power states from the hypervisor, the queued check on), timed
            ``AUDIT_RUNS`` times; raises BenchError when a row is missing.
            """
            from nova_guardrails import audit
            self._reset_mix()
            driver = self.computes[HOST].manager.driver
            times = []
            for _ in range(AUDIT_RUNS):
                started = time.monotonic()
                found = audit.rows(self.ctxt, HOST,
                                   lambda i: driver.get_info(i).state,
                                   grace=AUDIT_GRACE)
                times.append(time.monotonic() - started)
            if len(found) != len(self.transitional):
                raise BenchError('audit: %d rows for %d transitional '
                                 'instances' % (len(found),
                                                len(self.transitional)))
            return {'runs': AUDIT_RUNS, 'rows': len(found),
                    'median_seconds': statistics.median(times),
                    'min_seconds': min(times)}

        # Instrumentation ------------------------------------------------

        def _instrument(self):
            from nova.scheduler.client import report
            from nova import service as nova_service
            test = self

            def placement_engine():
                try:
                    from placement import db_api
                    return db_api.placement_context_manager.writer.\
                        get_engine()
                except Exception:
                    return None
            self._placement_engine = placement_engine

            def on_sql(conn, cursor, statement, *args):
                if not window.active:
                    return
                with window.lock:
                    if conn.engine is test._placement_engine_now:
                        window.sql_placement += 1
                    else:
                        window.sql_nova += 1
            event.listen(sqlalchemy.engine.Engine, 'before_cursor_execute',
                         on_sql)
            self.addCleanup(event.remove, sqlalchemy.engine.Engine,
                            'before_cursor_execute', on_sql)

            def count(attr):
                def record(*args, **kwargs):
                    if window.active:
                        with window.lock:
                            setattr(window, attr, getattr(window, attr) + 1)
                return record
            for verb in ('get', 'put', 'post', 'delete'):
                self.spy('nova.scheduler.client.report.SchedulerReportClient',
                         verb, count('placement'))
            assert report  # imported for the spy's target
            self._spy_neutron(count('neutron'))

            # Lookups by uuid in fakelibvirt scan every domain (quadratic
            # in the instances at start-up, unlike libvirt): indexed here.
            original_lookup = fakelibvirt.Connection.lookupByUUIDString

            def lookup(conn, uuid):
                index = conn.__dict__.setdefault('_bench_index', {})
                dom = conn._vms.get(index.get(uuid))
                if dom is not None and dom.UUIDString() == uuid:
                    return dom
                for dom in conn._vms.values():
                    index[dom.UUIDString()] = dom.name()
                return original_lookup(conn, uuid)
            self.useFixture(fixtures.MonkeyPatch(
                'nova.tests.fixtures.libvirt.Connection.lookupByUUIDString',
                lookup))

            original_start = nova_service.Service.start

            def start(service):
                if service.binary == 'nova-compute':
                    test._wrap_manager(service.manager)
                return original_start(service)
            self.useFixture(fixtures.MonkeyPatch(
                'nova.service.Service.start', start))

        def _spy_neutron(self, record):
            import inspect
            from nova.network import neutron
            local = threading.local()
            for name, func in vars(neutron.API).items():
                if name.startswith('_') or not inspect.isfunction(func):
                    continue

                def wrapped(*args, _func=func, **kwargs):
                    depth = getattr(local, 'depth', 0)
                    if not depth:
                        record()
                    local.depth = depth + 1
                    try:
                        return _func(*args, **kwargs)
                    finally:
                        local.depth = depth
                self.useFixture(fixtures.MonkeyPatch(
                    'nova.network.neutron.API.%s' % name, wrapped))

        def _wrap_manager(self, manager):
            """Time init_host as the service start runs it (the guards'
            wrappers, bound on this manager instance, included); record
            the instances it initialised.
            """
            init_host = manager.init_host
            init_instance = manager._init_instance
            self._placement_engine_now = self._placement_engine()

            def timed_init_host(*args, **kwargs):
                window.reset()
                guard_calls = self.db_access.guard_calls
                window.active = True
                started = time.perf_counter()
                try:
                    return init_host(*args, **kwargs)
                finally:
                    self._elapsed = time.perf_counter() - started
                    window.active = False
                    self._guard_calls = (self.db_access.guard_calls -
                                         guard_calls)

            def recorded_init_instance(context, instance, *args, **kwargs):
                window.init_instance.add(instance.uuid)
                return init_instance(context, instance, *args, **kwargs)
            manager.init_host = timed_init_host
            manager._init_instance = recorded_init_instance

        # Instances ------------------------------------------------------

        def _connection(self):
            return self.computes[HOST].driver._host.get_connection()

        def _clone(self, uuid, count):
            """``count`` copies of instance ``uuid``: Instance (its extra
            and info cache), InstanceMapping, BlockDeviceMappings, and
            its guest defined and started from its XML.
            """
            ctxt = self.ctxt
            src = objects.Instance.get_by_uuid(
                ctxt, uuid, expected_attrs=[
                    'flavor', 'info_cache', 'metadata', 'system_metadata',
                    'numa_topology', 'pci_requests', 'vcpu_model',
                    'trusted_certs', 'resources', 'device_metadata'])
            mapping = objects.InstanceMapping.get_by_instance_uuid(
                ctxt, uuid)
            bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
                ctxt, uuid)
            xml = self._connection().lookupByUUIDString(uuid).XMLDesc(0)
            skip = {'id', 'uuid', 'created_at', 'updated_at', 'deleted_at',
                    'deleted', 'info_cache', 'security_groups', 'ec2_ids',
                    'fault', 'tags', 'services', 'pci_devices', 'keypairs',
                    'migration_context', 'hidden', 'display_name',
                    'hostname'}
            made = []
            for i in range(count):
                new = objects.Instance(context=ctxt)
                for field in src.fields:
                    if field not in skip and src.obj_attr_is_set(field):
                        setattr(new, field, getattr(src, field))
                new.uuid = uuidutils.generate_uuid()
                new.display_name = new.hostname = 'bench-%d' % (i + 1)
                new.info_cache = objects.InstanceInfoCache(
                    network_info=src.info_cache.network_info)
                new.create()
                objects.InstanceMapping(
                    ctxt, instance_uuid=new.uuid,
                    cell_mapping=mapping.cell_mapping,
                    project_id=mapping.project_id,
                    user_id=mapping.user_id,
                    queued_for_delete=False).create()
                for bdm in bdms:
                    copy = objects.BlockDeviceMapping(ctxt)
                    for field in bdm.fields:
                        if field not in ('id', 'uuid', 'instance_uuid',
                                         'instance', 'created_at',
                                         'updated_at', 'deleted_at',
                                         'deleted') and \
                                bdm.obj_attr_is_set(field):
                            setattr(copy, field, getattr(bdm, field))
                    copy.uuid = uuidutils.generate_uuid()
                    copy.instance_uuid = new.uuid
                    copy.create()
                guest = xml.replace(uuid, new.uuid).replace(
                    '<name>%s</name>' % src.name,
                    '<name>%s</name>' % new.name)
                self._connection().defineXML(guest).create()
                made.append(new.uuid)
            return made

        def _reset_mix(self):
            conn = self._connection()
            for i, uuid in enumerate(self.transitional):
                task_state, action, event_name = MIX[i % len(MIX)]
                dom = conn.lookupByUUIDString(uuid)
                if dom.info()[0] != fakelibvirt.VIR_DOMAIN_RUNNING:
                    dom.create()
                instance = objects.Instance.get_by_uuid(self.ctxt, uuid)
                instance.vm_state = 'active'
                instance.task_state = task_state
                instance.power_state = power_state.RUNNING
                instance.save()
                ctxt = nova_context.get_admin_context()
                objects.InstanceAction.action_start(
                    ctxt, uuid, action, want_result=False)
                objects.InstanceActionEvent.event_start(
                    ctxt, uuid, event_name, want_result=False, host=HOST)

        def _restart(self, mode, reset):
            if reset:
                self._reset_mix()
            self.use_nova_conf(harness.GUARDED_NOVA_CONF if mode == GUARDED
                               else harness.NOVA_ALONE_CONF)
            # The service has reported (as a real node always has).
            service = objects.Service.get_by_compute_host(self.ctxt, HOST)
            service.report_count += 1
            service.save()
            self._elapsed = None
            self.restart_compute_service(HOST)
            if self._elapsed is None:
                raise BenchError('%s: the restart did not run init_host'
                                 % mode)
            driver = type(self.computes[HOST].manager.driver).__name__
            expected = 'GuardrailsDriver' if mode == GUARDED \
                else 'LibvirtDriver'
            if driver != expected:
                raise BenchError('%s: nova-compute runs %s' % (mode, driver))
            missing = set(self.uuids) - window.init_instance
            if missing:
                raise BenchError(
                    '%s: init_host did not initialise %d of %d instances'
                    % (mode, len(missing), len(self.uuids)))
            left = [i.uuid for i in objects.InstanceList.get_by_host(
                self.ctxt, HOST) if i.task_state is not None]
            # nova alone may leave some (nova 29 leaves a running guest's
            # rebooting): only the guarded start-up must settle every one.
            if left and mode == GUARDED:
                raise BenchError(
                    '%s: %d instance(s) left in a transitional task_state'
                    % (mode, len(left)))
            return {'mode': mode, 'init_host_seconds': self._elapsed,
                    'instances_initialised': len(window.init_instance),
                    'sql_nova': window.sql_nova,
                    'sql_placement': window.sql_placement,
                    'guard_round_trips': (self._guard_calls
                                          if mode == GUARDED else 0),
                    'placement_requests': window.placement,
                    'neutron_calls': window.neutron}

    return BenchCase


def measure(size, restarts=5, transitional_percent=5.0):
    """Run one size; returns its result dict. Raises BenchError."""
    if size < 1 or restarts < 1:
        raise BenchError('instances and restarts must be >= 1')
    from nova_guardrails.lab import harness
    window = _Window()
    results = {}
    case = _make_case(harness, size, restarts, transitional_percent,
                      window, results)('runTest')
    outcome = unittest.TestResult()
    case.run(outcome)
    problems = outcome.errors + outcome.failures
    if problems:
        raise BenchError('%d instances: %s' % (size, problems[0][1]))
    return summarise(size, transitional_percent, results)


def summarise(size, percent, results):
    out = {'instances': size, 'transitional_percent': percent,
           'transitional_instances': results['transitional'],
           'restarts': results['runs'], 'stable_guarded': results['stable']}
    for mode in (ALONE, GUARDED):
        runs = [r for r in results['runs'] if r['mode'] == mode]
        times = [r['init_host_seconds'] for r in runs]
        summary = {'restarts': len(runs),
                   'median_seconds': statistics.median(times),
                   'min_seconds': min(times)}
        for key in ('sql_nova', 'sql_placement', 'guard_round_trips',
                    'placement_requests', 'neutron_calls'):
            summary[key] = statistics.median(r[key] for r in runs)
        out[mode] = summary
    out['ratio_median'] = (out[GUARDED]['median_seconds'] /
                           out[ALONE]['median_seconds'])
    out['stable_guard_round_trips'] = results['stable']['guard_round_trips']
    out['audit'] = results['audit']
    return out


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return {'cpu': cpu, 'cores': os.cpu_count(),
            'nova': importlib.metadata.version('nova'),
            'python': platform.python_version(),
            'platform': platform.platform()}


def targets(sizes):
    """The targets (:data:`TARGETS`), from the measured sizes."""
    out = []
    by_size = {s['instances']: s for s in sizes}
    at = by_size.get(TARGET_SIZE)
    if at is None:
        out.append({'target': 'guarded init_host <= %.2fx nova alone at '
                              '%d instances' % (MAX_RATIO, TARGET_SIZE),
                    'met': None, 'detail': 'not measured at %d instances'
                    % TARGET_SIZE})
    else:
        ratio = at['ratio_median']
        out.append({'target': 'guarded init_host <= %.2fx nova alone at '
                              '%d instances' % (MAX_RATIO, TARGET_SIZE),
                    'met': ratio <= MAX_RATIO,
                    'detail': 'median ratio %.3f (%+.1f%%)' % (
                        ratio, (ratio - 1) * 100)})
    label = 'nova-guardrails audit of %d instances <= %.1f s' % (
        TARGET_SIZE, MAX_AUDIT_SECONDS)
    if at is None:
        out.append({'target': label, 'met': None,
                    'detail': 'not measured at %d instances' % TARGET_SIZE})
    else:
        seconds = at['audit']['median_seconds']
        out.append({'target': label, 'met': seconds <= MAX_AUDIT_SECONDS,
                    'detail': 'median %.3f s, %d rows' % (
                        seconds, at['audit']['rows'])})
    stable = {s['instances']: s['stable_guard_round_trips'] for s in sizes}
    label = 'guard round trips per start-up constant in stable instances'
    if len(stable) < 2:
        out.append({'target': label, 'met': None,
                    'detail': 'needs two sizes or more'})
    else:
        out.append({'target': label, 'met': len(set(stable.values())) == 1,
                    'detail': ', '.join('%d at %d' % (stable[n], n)
                                        for n in sorted(stable))})
    return out


def render(report):
    import prettytable
    m = report['machine']
    lines = ['nova-guardrails bench: nova-compute start-up '
             '(ComputeManager.init_host), nova alone vs guarded',
             'machine: %s, %s cores; nova %s; python %s' % (
                 m['cpu'], m['cores'], m['nova'], m['python']),
             '%d timed restarts per mode per size, interleaved (after one '
             'warm-up each); transitional mix %s%% (%s)' % (
                 report['restarts'], report['transitional_percent'],
                 ', '.join(s for s, _, _ in MIX))]
    table = prettytable.PrettyTable(
        ['instances', 'transit.', 'mode', 'median s', 'min s', 'ratio',
         'SQL nova', 'SQL plac.', 'guard RT', 'placement', 'neutron'])
    table.align = 'r'
    table.align['mode'] = 'l'
    for size in report['sizes']:
        for mode in (ALONE, GUARDED):
            s = size[mode]
            table.add_row([
                size['instances'], size['transitional_instances'], mode,
                '%.3f' % s['median_seconds'], '%.3f' % s['min_seconds'],
                '%.3f' % size['ratio_median'] if mode == GUARDED else '',
                '%g' % s['sql_nova'], '%g' % s['sql_placement'],
                '%g' % s['guard_round_trips'] if mode == GUARDED else '-',
                '%g' % s['placement_requests'], '%g' % s['neutron_calls']])
    lines.append(table.get_string())
    lines.append('counts: medians per restart, during init_host; ratio: '
                 'guarded/alone median init_host time; guard RT of a '
                 'stable host (guarded, every instance stable): ' + ', '.join(
                     '%d at %d' % (s['stable_guard_round_trips'],
                                   s['instances'])
                     for s in report['sizes']))
    lines.append('nova-guardrails audit (audit.rows, median of %d): %s' % (
        AUDIT_RUNS, ', '.join(
            '%.3f s for %d rows at %d' % (s['audit']['median_seconds'],
                                          s['audit']['rows'], s['instances'])
            for s in report['sizes'])))
    for t in report['targets']:
        verdict = {True: 'MET', False: 'MISSED', None: 'NOT MEASURED'}[
            t['met']]
        lines.append('target: %s: %s (%s)' % (
            t['target'], verdict, t['detail']))
    import textwrap
    return '\n'.join(
        line if line.startswith(('+', '|')) else
        textwrap.fill(line, 120, subsequent_indent='  ')
        for line in '\n'.join(lines).split('\n')) + '\n'


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(prog='nova-guardrails bench')
    parser.add_argument('--instances', type=int, nargs='+',
                        default=[10, 100, 1000], metavar='N',
                        help='instances on the host, one run per size '
                             '(default: 10 100 1000)')
    parser.add_argument('--restarts', type=int, default=5, metavar='N',
                        help='timed restarts per mode per size (default 5)')
    parser.add_argument('--transitional-percent', type=float, default=5.0,
                        metavar='P',
                        help='percentage of instances in a transitional '
                             'task_state at each restart (default 5; 0: '
                             'all stable)')
    parser.add_argument('--json', metavar='PATH',
                        help='also write the results as JSON to PATH')
    parser.add_argument('--log-file', metavar='PATH',
                        help='nova\'s log of the run')
    return parser


def run(sizes, restarts, transitional_percent, progress=None):
    """Measure every size; returns the report dict."""
    started = time.monotonic()
    measured = []
    for size in sizes:
        result = measure(size, restarts, transitional_percent)
        measured.append(result)
        if progress:
            progress('%d instances: alone %.3f s, guarded %.3f s (ratio '
                     '%.3f)' % (size, result[ALONE]['median_seconds'],
                                result[GUARDED]['median_seconds'],
                                result['ratio_median']))
    return {'machine': machine(),
            'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec='seconds'),
            'restarts': restarts,
            'transitional_percent': transitional_percent,
            'sizes': measured, 'targets': targets(measured),
            'elapsed_seconds': round(time.monotonic() - started, 1)}


def main(args):
    if not 0 <= args.transitional_percent <= 100:
        sys.stderr.write('nova-guardrails bench: --transitional-percent '
                         'must be within 0..100\n')
        return 2
    if min(args.instances) < 1 or args.restarts < 1:
        sys.stderr.write('nova-guardrails bench: --instances and '
                         '--restarts must be >= 1\n')
        return 2
    from nova_guardrails.lab import runner

    def body(out, log_path):
        import warnings
        warnings.simplefilter('ignore')

        def progress(line):
            out.write(line + '\n')
            out.flush()
        try:
            report = run(args.instances, args.restarts,
                         args.transitional_percent, progress)
        except BenchError as error:
            out.write('nova-guardrails bench: FAILED: %s\nnova\'s log: %s\n'
                      % (error, log_path))
            return 1
        out.write(render(report))
        out.write('%.0f s; nova\'s log: %s\n' % (report['elapsed_seconds'],
                                                 log_path))
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(report, f, indent=2)
        return 0
    return runner.quietly(body, args.log_file, prefix='nova-guardrails-bench-')
