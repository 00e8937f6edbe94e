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
"""Scenario c: an HA standby over the same hypervisor (nova bug 1419785).

hv1's nova-compute runs guests and dies (SIGKILL); a second nova-compute,
``[DEFAULT] host = hv1-standby``, is started over the same libvirtd, as an
HA pair fails over (its own state directory: another node's nova.conf).

Two histories:

* a new standby: it never ran before. Guarded, host_identity refuses the
  start (the start-up report says refused, no service is registered).
  nova alone (measured): nova 34's own ``_sanity_check_new_host`` refuses
  too ("My hypervisor has existing instances, but I appear to be a new
  service in this database").
* bug 1419785's history: the standby was started once while the hypervisor
  was empty (nova alone allows it and registers hv1-standby), then hv1 ran
  the guests and died. Guarded, host_identity refuses; nova alone starts
  (measured below).

Either way the guests must still run, with their disks in Ceph intact.
"""

import pytest

from nova_guardrails import driver

MARK = b'nova-guardrails real tier: bug 1419785 marker'
OFFSET = 1024 * 1024
STANDBY = 'hv1-standby'


def compute_nodes(tier, name):
    """nova's compute nodes of hypervisor ``name``: [(service host,
    state)].
    """
    out = []
    for node in tier.nova.get('/os-hypervisors/detail')['hypervisors']:
        if node['hypervisor_hostname'] == name:
            out.append((node['service']['host'], node['state']))
    return sorted(out)


def guests_and_disks(tier, servers):
    return ({s: tier.guest('hv1', s) for s in servers}, tier.rbd_images())


def check_untouched(tier, servers, before, measured):
    guests, images = before
    after, images_after = guests_and_disks(tier, servers)
    records = {s: tier.server_state(s) for s in servers}
    measured(guests={s[:8]: (g or {}).get('state') for s, g in after.items()},
             records={s[:8]: (r['host'], r['status'])
                      for s, r in records.items()},
             images_kept=images_after == images)
    for server in servers:
        # The same domain, still running (same libvirt id: never restarted).
        assert after[server] == guests[server], (after, guests)
        assert tier.rbd_read('%s_disk' % server, OFFSET, len(MARK)) == MARK
        assert (records[server]['host'], records[server]['status']) == (
            'hv1', 'ACTIVE')
    assert images_after == images


def boot_guests(tier, count=2):
    servers = [tier.boot('bug-1419785-%d' % i)['id'] for i in range(count)]
    for server in servers:
        tier.rbd_write('%s_disk' % server, OFFSET, MARK)
    return servers


def check_refused(tier, standby, measured, who):
    """The standby's start was refused by ``who`` (log line)."""
    if who == 'host_identity':
        report = standby.wait_report()
        measured(report_status=report['status'][:100],
                 decisions=[(r['action'], r['outcome'])
                            for r in report['decisions']])
        assert report['status'].startswith(
            'failed: nova-guardrails host_identity:'), report
        refusals = [r for r in report['decisions']
                    if r['action'] == 'refuse_start']
        assert refusals and all(r['outcome'] == 'refused'
                                for r in refusals), report['decisions']
        text = 'nova-guardrails host_identity: hypervisor node(s) hv1'
    else:
        text = ('My hypervisor has existing instances, but I appear to be '
                'a new service in this database')
    exited = standby.wait_exit_or_none(20)
    errors = standby.wait_errors(text)
    measured(refused_by=who, exit_status=exited, error=errors[0][:160])
    return exited


@pytest.mark.parametrize('guarded', [True, False],
                         ids=['guarded', 'nova_alone'])
def test_new_standby_over_running_guests(tier, measured, guarded):
    primary = tier.compute('hv1', guarded=guarded).start().wait_up()
    servers = boot_guests(tier)
    before = guests_and_disks(tier, servers)
    primary.kill()
    standby = tier.compute('hv1', host=STANDBY, guarded=guarded).start()
    exited = check_refused(tier, standby, measured,
                           'host_identity' if guarded else 'nova')
    assert tier.services(STANDBY) == []
    assert compute_nodes(tier, 'hv1') == [('hv1', 'up')] or \
        compute_nodes(tier, 'hv1')[0][0] == 'hv1'
    check_untouched(tier, servers, before, measured)
    if guarded:
        # A refused nova-compute must end, so that a service manager shows
        # it failed. nova 34 in threading mode hangs at exit once
        # init_host raised (nova alone too, on its own refusal): futurist's
        # atexit handler joins the libvirt driver's connection event
        # thread, which never returns (the to-do in nova.virt.libvirt.host.
        # Host.cleanup). nova-guardrails ends it with EX_CONFIG.
        assert exited is not None, (
            'host_identity refused the start (report, guests and disks as '
            'they must be) but the nova-compute process did not exit')
        assert exited == driver.EXIT_REFUSED


@pytest.mark.parametrize('guarded', [True, False],
                         ids=['guarded', 'nova_alone'])
def test_bug_1419785_standby_registered_before(tier, measured, guarded):
    # The past, before nova-guardrails: nova alone everywhere.
    primary = tier.compute('hv1', guarded=False).start().wait_up()
    primary.kill()
    history = tier.compute('hv1', host=STANDBY, guarded=False,
                           name='nova-compute-hv1-standby-history')
    history.start().wait_serving()
    # As an operator adding a compute host would (nova-manage cell_v2
    # discover_hosts): its compute node is then listed by os-hypervisors.
    tier.discover_host(STANDBY)
    registered = [s['host'] for s in tier.services(STANDBY)]
    nodes = compute_nodes(tier, 'hv1')
    history.kill()
    primary.start().wait_up()
    servers = boot_guests(tier)
    before = guests_and_disks(tier, servers)
    primary.kill()
    measured(history_services=registered, history_nodes=nodes)
    assert registered == [STANDBY]

    standby = tier.compute('hv1', host=STANDBY, guarded=guarded)
    standby.start()
    if guarded:
        exited = check_refused(tier, standby, measured, 'host_identity')
        check_untouched(tier, servers, before, measured)
        assert exited == driver.EXIT_REFUSED, (
            'host_identity refused the start but the nova-compute process '
            'did not exit with EX_CONFIG (%s)' % exited)
    else:
        standby.wait_serving()
        tier.settle(15)
        measured(standby_state=tier.service_state(STANDBY),
                 nodes=compute_nodes(tier, 'hv1'),
                 errors=standby.errors()[:4])
        check_untouched(tier, servers, before, measured)
