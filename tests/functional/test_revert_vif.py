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
"""revert_vif guard on real nova 34 (nova bug 1450624).

nova's NeutronFixture with neutron's agents simulated (harness.NeutronAgents):
a port bound to the host where its vif is plugged goes ACTIVE and neutron
sends network-vif-plugged; a port bound elsewhere gets nothing. Waits are on
(vif_plugging_timeout 3 s, vif_plugging_is_fatal). The bug's own revert (port
bound elsewhere) is regressions/test_bug_1450624.py, on this module's _Base.
"""

import fixtures

import nova.conf
from nova_guardrails.lab import harness
from nova_guardrails.lab import scenarios

CONF = nova.conf.CONF
TIMEOUT = 3
#: A vif_plugging_timeout no test may wait out: a test that must not wait
#: fails as soon as the driver starts waiting for the event.
LONG_TIMEOUT = 600


class _Base(harness.GuardrailsTestBase):

    def setUp(self):
        super().setUp()
        self.server, self.port_id, self.agents = scenarios.resized_with_port(
            self, timeout=TIMEOUT)
        self.assertEqual('compute2', self.port_host())

    def port_host(self):
        return self.neutron.show_port(self.port_id)['port'][
            'binding:host_id']

    def revert(self):
        self.sent_before = len(self.agents.sent)
        return scenarios.revert(self, self.server)

    def decisions(self):
        return [d for d in scenarios.decisions()
                if d['guard'] == 'revert_vif']

    def driver_waits(self):
        """The vif events the driver waits for (nova's ComputeVirtAPI
        ``wait_for_instance_event``, observed by a recording
        pass-through): a list that fills as the driver waits.
        """
        waited = []
        self.spy('nova.compute.manager.ComputeVirtAPI',
                 'wait_for_instance_event',
                 lambda virtapi, instance, event_names, *a, **kw:
                 waited.extend(tuple(e) for e in event_names))
        return waited

    def revert_unless_waiting(self, waited):
        """Revert; return the server once it settles, or as soon as the
        driver waits for this port's network-vif-plugged.
        """
        self.api.post_server_action(self.server['id'],
                                    {'revertResize': None})
        self.wait_until(
            lambda: (('network-vif-plugged', self.port_id) in waited or
                     self.api.get_server(self.server['id'])['status']
                     in ('ACTIVE', 'ERROR')), timeout=60)
        return self.api.get_server(self.server['id'])

    def plugged_events(self):
        """network-vif-plugged events neutron sent during the revert."""
        return [e for e in self.agents.sent[self.sent_before:]
                if e['tag'] == self.port_id]


class GuardedRevertTest(_Base):

    def test_rebind_lost_too_is_not_waited_for(self):
        # nova's binding update is lost (bug 1450624), and the guard's own
        # rebind is lost the same way: neutron acknowledges it, the port
        # stays bound to compute2, its event cannot come.
        scenarios.make_revert_race(self, self.port_id, self.agents)
        self.agents.lose = 2
        self.flags(vif_plugging_timeout=LONG_TIMEOUT)
        waited = self.driver_waits()
        server = self.revert_unless_waiting(waited)
        self.assertNotIn(('network-vif-plugged', self.port_id), waited)
        self.assertEqual(('ACTIVE', 'compute1'),
                         (server['status'], server['OS-EXT-SRV-ATTR:host']))
        self.assertEqual(0, self.agents.lose)
        self.assertEqual('compute2', self.port_host())
        [decision] = self.decisions()
        self.assertEqual(('skip_wait', 'failed'),
                         (decision['action'], decision['outcome']))
        self.assertEqual({'method': 'finish_revert_migration',
                          'port': self.port_id, 'binding_host': 'compute2',
                          'binding_host_after': 'compute2',
                          'status_after': 'DOWN'}, decision['details'])
        self.assertIn('compute2', decision['error'])

    def test_normal_revert_unchanged(self):
        server, seconds = self.revert()
        self.assertEqual(('ACTIVE', 'compute1'),
                         (server['status'], server['OS-EXT-SRV-ATTR:host']))
        self.assertEqual('compute1', self.port_host())
        self.assertEqual([], self.decisions())

    def test_neutron_unreachable_keeps_novas_behaviour(self):
        def unreachable(context):
            raise ConnectionError('neutron is down')
        self.useFixture(fixtures.MonkeyPatch(
            'nova_guardrails.guards.revert_vif.neutron_client', unreachable))
        scenarios.make_revert_race(self, self.port_id, self.agents)
        server, seconds = self.revert()
        # As nova alone: the wait times out.
        self.assertEqual('ERROR', server['status'])
        self.assertGreaterEqual(seconds, TIMEOUT)
        [decision] = self.decisions()
        self.assertEqual(('nova', 'failed'),
                         (decision['action'], decision['outcome']))
        self.assertIn('neutron is down', decision['error'])

    def test_unfixable_binding_fails_fast(self):
        scenarios.make_revert_race(self, self.port_id, self.agents)
        self.agents.refuse = True
        server, seconds = self.revert()
        self.assertEqual('ERROR', server['status'])
        self.assertLess(seconds, TIMEOUT)
        for text in ('revert_vif: failing now', self.port_id,
                     'bound to host compute2'):
            self.assertIn(text, server['fault']['message'])
        [decision] = self.decisions()
        self.assertEqual(('fail_fast', 'refused'),
                         (decision['action'], decision['outcome']))

    def test_unfixable_binding_skip_wait(self):
        self.use_nova_conf('[guardrails]\nrevert_vif_policy = skip-wait\n')
        # The policy is read when the compute service loads its guards.
        self.restart_compute_service('compute1')
        scenarios.make_revert_race(self, self.port_id, self.agents)
        self.agents.refuse = True
        server, seconds = self.revert()
        self.assertEqual(('ACTIVE', 'compute1'),
                         (server['status'], server['OS-EXT-SRV-ATTR:host']))
        self.assertLess(seconds, TIMEOUT)
        self.assertEqual('compute2', self.port_host())
        [decision] = self.decisions()
        self.assertEqual('skip_wait', decision['action'])


class NovaAloneRevertTest(_Base):
    NOVA_CONF = harness.NOVA_ALONE_CONF

    def test_normal_revert(self):
        server, seconds = self.revert()
        self.assertEqual(('ACTIVE', 'compute1'),
                         (server['status'], server['OS-EXT-SRV-ATTR:host']))


class _ResizeBase(harness.GuardrailsTestBase):
    """The same lost binding update on the way out (finish_migration on the
    destination). nova 34's libvirt finish_migration does not wait for vif
    events (vifs_already_plugged=True): no timeout, but the port stays bound
    to the source host.
    """

    def resize_with_race(self, refuse=False, lose=1):
        server, port_id, agents = scenarios.server_with_port(self, TIMEOUT)
        self.neutron._ports[port_id]['status'] = 'DOWN'
        agents.lose = lose
        agents.refuse = refuse
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': '2'}})
        self.wait_until(lambda: self.api.get_server(server['id'])['status']
                        in ('VERIFY_RESIZE', 'ERROR'), timeout=60)
        return (self.api.get_server(server['id']),
                self.neutron.show_port(port_id)['port']['binding:host_id'])


class GuardedResizeTest(_ResizeBase):

    def test_finish_migration_port_bound_elsewhere(self):
        server, port_host = self.resize_with_race()
        self.assertEqual(('VERIFY_RESIZE', 'compute2'),
                         (server['status'], server['OS-EXT-SRV-ATTR:host']))
        self.assertEqual('compute2', port_host)
        [decision] = [d for d in scenarios.decisions()
                      if d['guard'] == 'revert_vif']
        self.assertEqual(('rebind', 'finish_migration', 'compute1'),
                         (decision['action'],
                          decision['details']['method'],
                          decision['details']['binding_host']))

    def test_finish_migration_rebind_lost_too(self):
        # The guard's rebind is lost as nova's was: it is not recorded as
        # done; the driver does not wait here, so the resize goes on.
        server, port_host = self.resize_with_race(lose=2)
        self.assertEqual(('VERIFY_RESIZE', 'compute2'),
                         (server['status'], server['OS-EXT-SRV-ATTR:host']))
        self.assertEqual('compute1', port_host)
        [decision] = [d for d in scenarios.decisions()
                      if d['guard'] == 'revert_vif']
        self.assertEqual(('not_rebound', 'failed', 'compute1'),
                         (decision['action'], decision['outcome'],
                          decision['details']['binding_host_after']))
        self.assertIn('not applied', decision['error'])

    def test_finish_migration_unfixable_binding_does_not_fail(self):
        # The driver does not wait on finish_migration: a binding that
        # cannot be moved must not fail a resize that nova completes.
        server, port_host = self.resize_with_race(refuse=True)
        self.assertEqual(('VERIFY_RESIZE', 'compute2'),
                         (server['status'], server['OS-EXT-SRV-ATTR:host']))
        [decision] = [d for d in scenarios.decisions()
                      if d['guard'] == 'revert_vif']
        self.assertEqual(('not_rebound', 'failed'),
                         (decision['action'], decision['outcome']))


class NovaAloneResizeTest(_ResizeBase):
    NOVA_CONF = harness.NOVA_ALONE_CONF

    def test_finish_migration_port_bound_elsewhere(self):
        server, port_host = self.resize_with_race()
        # No wait, so no error: the guest runs on compute2 with its port
        # still bound to compute1.
        self.assertEqual(('VERIFY_RESIZE', 'compute2'),
                         (server['status'], server['OS-EXT-SRV-ATTR:host']))
        self.assertEqual('compute1', port_host)
