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
"""A nova-compute restart on the real tier, nova alone against guarded.

``make bench-real`` (``python -m real.bench_restart`` from ``tests/``): the
real deployment tier (:mod:`real.deployment`: MariaDB, RabbitMQ, Ceph,
libvirtd/QEMU, placement, glance, neutron, nova-api, -conductor and
-scheduler as processes) with one nova-compute over hypervisor hv1, host
hv1, no database in its nova.conf. It boots ``--instances`` servers there
(64 MB guests idling in SeaBIOS, root disks in Ceph), then restarts that
nova-compute ``--restarts`` times per mode, alternately nova alone
(``compute_driver = libvirt.LibvirtDriver``) and guarded (every default
guard), after one untimed start of each: each restart is a SIGKILL of the
running one, then an exec of nova-compute with the mode's nova.conf
(tests/real/launcher.py, ``GUARDRAILS_MEASURE_START``).

Per restart: seconds from the exec to the call of ``init_host`` and to the
return of ``Service.start`` (init_host done, the RPC server consuming its
queue in RabbitMQ), seconds in ``init_host`` (the guards' wrapper when
guarded), and round trips to nova-conductor (remotable calls of nova's
objects) during init_host and up to the service's start. Every server must
be ACTIVE, none left with a task_state, after every restart.

A benchmark, not a test: it prints its results (and writes JSON with
``--json``), and asserts nothing on a duration.
"""

import argparse
import json
import os
import statistics
import sys
import time

import prettytable

from real import deployment

ALONE, GUARDED = 'nova alone', 'guarded'
MODES = (ALONE, GUARDED)
KEYS = ('started_seconds', 'init_host_at_seconds', 'init_host_seconds',
        'conductor_calls_before_init_host', 'conductor_calls_init_host',
        'conductor_calls_until_started')


def parse(argv):
    parser = argparse.ArgumentParser(prog='bench-real', description=(
        'nova-compute restart on the real tier: nova alone vs guarded'))
    parser.add_argument('--instances', type=int, default=50, metavar='N',
                        help='servers on the host (default 50)')
    parser.add_argument('--restarts', type=int, default=5, metavar='N',
                        help='timed restarts per mode (default 5)')
    parser.add_argument('--json', metavar='PATH',
                        help='also write the results as JSON to PATH')
    args = parser.parse_args(argv)
    if args.instances < 1 or args.restarts < 1:
        parser.error('--instances and --restarts must be >= 1')
    return args


def boot_all(tier, count):
    """``count`` servers on hv1, asked for together; their ids, once every
    one is ACTIVE.
    """
    # nova's default quota is 10 instances and 20 cores per project; the
    # default quota class (a project's quota needs keystone, which the
    # tier has not).
    tier.nova.put('/os-quota-class-sets/default', {
        'quota_class_set': {'instances': -1, 'cores': -1, 'ram': -1}})
    ids = []
    for i in range(count):
        body = {'server': {
            'name': 'bench-%03d' % i, 'imageRef': tier.image_id,
            'flavorRef': tier.flavors['tiny'], 'networks': 'none',
            'host': 'hv1'}}
        ids.append(tier.nova.post('/servers', body)['server']['id'])
    for server_id in ids:
        tier.wait_server(server_id, 'ACTIVE', timeout=600)
    return ids


def restart(tier, running, compute, measure_path, ids):
    """SIGKILL ``running``, exec ``compute``; its measurement (dict)."""
    if running is not None:
        running.kill()
    tier.wait_for(lambda: tier.queue('compute.hv1')[1] == 0, 60,
                  'the killed nova-compute gone from its queue')
    with open(measure_path, 'w'):
        pass
    compute.env['GUARDRAILS_EXEC_AT'] = repr(time.time())
    compute.start(crash_points=False)
    compute.wait_serving(timeout=600)

    def measured():
        with open(measure_path) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        return lines[-1] if lines else None
    record = tier.wait_for(measured, 60, 'the start-up measurement')
    for server_id in ids:
        server = tier.server(server_id)
        if server['status'] != 'ACTIVE' or server['OS-EXT-STS:task_state']:
            raise SystemExit('server %s is %s/%s after a restart' % (
                server_id, server['status'],
                server['OS-EXT-STS:task_state']))
    return record


def summarise(runs):
    out = {}
    for mode in MODES:
        mine = [r for r in runs if r['mode'] == mode]
        out[mode] = {key: statistics.median(r[key] for r in mine)
                     for key in KEYS}
        out[mode]['min_started_seconds'] = min(
            r['started_seconds'] for r in mine)
    out['ratio_started'] = (out[GUARDED]['started_seconds'] /
                            out[ALONE]['started_seconds'])
    out['ratio_init_host'] = (out[GUARDED]['init_host_seconds'] /
                              out[ALONE]['init_host_seconds'])
    return out


def render(result):
    table = prettytable.PrettyTable(
        ['mode', 'exec->started s', 'min s', 'exec->init_host s',
         'init_host s', 'conductor RT init_host', 'until started'])
    table.align = 'r'
    table.align['mode'] = 'l'
    for mode in MODES:
        s = result['summary'][mode]
        table.add_row([mode, '%.2f' % s['started_seconds'],
                       '%.2f' % s['min_started_seconds'],
                       '%.2f' % s['init_host_at_seconds'],
                       '%.2f' % s['init_host_seconds'],
                       '%g' % s['conductor_calls_init_host'],
                       '%g' % s['conductor_calls_until_started']])
    return '\n'.join([
        'real tier: nova-compute restart (SIGKILL, exec) over %d servers, '
        '%d timed restarts per mode, interleaved; medians' % (
            result['instances'], result['restarts']),
        table.get_string(),
        'ratio guarded/alone: exec->started %.3f, init_host %.3f' % (
            result['summary']['ratio_started'],
            result['summary']['ratio_init_host']),
    ]) + '\n'


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    lacking = deployment.missing()
    if lacking:
        sys.stderr.write('bench-real needs: %s (make bench-real installs '
                         'them)\n' % ', '.join(lacking))
        return 2
    tier = deployment.Tier()
    tier.start()
    try:
        # 1 VCPU each, more servers than the machine's cores.
        conf = {'DEFAULT': {'cpu_allocation_ratio': '64',
                            'disk_allocation_ratio': '64'}}
        computes = {GUARDED: tier.compute('hv1', guarded=True, conf=conf),
                    ALONE: tier.compute('hv1', guarded=False, conf=conf)}
        measure_path = os.path.join(tier.dir, 'log', 'measure-start.jsonl')
        for compute in computes.values():
            compute.env['GUARDRAILS_MEASURE_START'] = measure_path
        running = computes[GUARDED].start(crash_points=False)
        running.wait_up(timeout=300)
        started = time.monotonic()
        ids = boot_all(tier, args.instances)
        print('%d servers ACTIVE on hv1 in %.0f s' % (
            len(ids), time.monotonic() - started), flush=True)
        runs = []
        for index in range(args.restarts + 1):
            for mode in MODES:
                record = restart(tier, running, computes[mode],
                                 measure_path, ids)
                running = computes[mode]
                if index == 0:
                    continue   # warm-up
                record['mode'] = mode
                runs.append(record)
                print('%s: exec->started %.2f s, init_host %.2f s, '
                      'conductor round trips %d during init_host' % (
                          mode, record['started_seconds'],
                          record['init_host_seconds'],
                          record['conductor_calls_init_host']), flush=True)
        result = {'instances': len(ids), 'restarts': args.restarts,
                  'runs': runs, 'summary': summarise(runs),
                  'machine': {'cores': os.cpu_count()}}
        sys.stdout.write(render(result))
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(result, f, indent=2)
        return 0
    finally:
        tier.stop()


if __name__ == '__main__':
    sys.exit(main())
