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
"""Regression test for nova bug 1419785: an HA standby over the same
hypervisor.

https://bugs.launchpad.net/nova/+bug/1419785

In the field, active/passive HA pairs ran a standby nova-compute with
another ``[DEFAULT] host`` over the same hypervisor. When it started, the
guests of the hypervisor belonged to instances recorded on the other host,
and ``ComputeManager._destroy_evacuated_instances`` (then keyed on the
instance's host) took them for evacuated ones and destroyed them all.
nova has since keyed that clean-up on evacuation migrations, given compute
nodes a uuid (``$state_path/compute_id``) and refused a new service over a
hypervisor that has guests (``_sanity_check_new_host``, nova >= 27). What
nova 34 alone still does, measured here: a standby started while the
hypervisor is empty registers a second compute node for it, and later
starts over the other host's running guests, which no service manages any
more.

Two nova-compute services over one fakelibvirt connection, started one
after the other, as an HA pair fails over. Guarded, the host_identity guard
runs right after the driver's ``init_host``, before nova's node checks and
before anything is written or destroyed, and refuses start-up
(``StartupRefused``; exit status 78 in nova-compute): the guests keep
running and nova's records are unchanged.
"""

from nova import exception as nova_exception

from functional import test_host_identity
from nova_guardrails import exception
from nova_guardrails.lab import harness

A, B = test_host_identity.A, test_host_identity.B


class GuardedStandbyTest(test_host_identity._Standby):

    def test_second_compute_node(self):
        self.start_compute(A)
        connection = self.stop_compute(A)
        error = self.assertRaises(exception.StartupRefused,
                                  self.start_compute_on, B, connection)
        message = str(error)
        for text in ('hypervisor node(s) hostA', 'host hostA',
                     'this nova-compute is host hostB',
                     '[DEFAULT] host = hostA', 'compute_id',
                     'openstack compute service delete'):
            self.assertIn(text, message)
        # Nothing was written: no service, no second node for hostA.
        self.assertEqual([], self.services(B))
        self.assertEqual([A], [n.host for n in self.compute_nodes(A)])
        [row] = self.decisions(B)
        self.assertEqual(('refuse_start', 'refused', 'hostA'),
                         (row['action'], row['outcome'], row['node']))

    def test_bug_1419785(self):
        """The standby registered over A's hypervisor before guardrails was
        enabled (nova alone allows it while the hypervisor is empty); A ran
        guests, died; B starts with guardrails.
        """
        servers, connection = self.standby_history()
        before = self.records(servers)
        error = self.assertRaises(exception.StartupRefused,
                                  self.start_compute_on, B, connection)
        message = str(error)
        for text in ('hypervisor node(s) hostA', 'host hostA',
                     'this nova-compute is host hostB',
                     '[DEFAULT] host = hostA'):
            self.assertIn(text, message)
        self.assertNotIn('allow_takeover_from', message)
        self.assertEqual({s['id']: 'running' for s in servers},
                         self.guests(connection, servers))
        self.assertEqual(before, self.records(servers))
        # allow_takeover_from cannot make it consistent (nova moves no
        # compute node or instance to another host): still refused, the
        # message says why.
        self.use_nova_conf('[guardrails]\nallow_takeover_from = hostA\n')
        error = self.assertRaises(exception.StartupRefused,
                                  self.start_compute_on, B, connection)
        self.assertIn('[guardrails] allow_takeover_from names hostA, but '
                      'no start-up can make that takeover consistent',
                      str(error))
        self.assertEqual({s['id']: 'running' for s in servers},
                         self.guests(connection, servers))
        self.assertEqual(before, self.records(servers))

    def test_new_standby_over_guests(self):
        self.start_compute(A)
        servers = self.boot(A, 2)
        connection = self.stop_compute(A)
        error = self.assertRaises(exception.StartupRefused,
                                  self.start_compute_on, B, connection)
        # host_identity speaks first, before nova's own check, on every
        # release (nova 29 runs _sanity_check_new_host before the driver's
        # init_host), with its report row.
        self.assertIn('hypervisor node(s) hostA', str(error))
        self.assertEqual([('refuse_start', 'refused')],
                         [(r['action'], r['outcome'])
                          for r in self.decisions(B)])
        self.assertEqual([], self.services(B))
        self.assertEqual([A], [n.host for n in self.compute_nodes(A)])
        self.assertEqual({s['id']: 'running' for s in servers},
                         self.guests(connection, servers))


class NovaAloneStandbyTest(test_host_identity._Standby):
    NOVA_CONF = harness.NOVA_ALONE_CONF

    def test_second_compute_node(self):
        self.start_compute(A)
        connection = self.stop_compute(A)
        self.start_compute_on(B, connection)
        # nova alone: a second compute node for the same hypervisor, so
        # placement counts the machine twice.
        self.assertEqual({A, B}, {n.host for n in self.compute_nodes(A)})

    def test_bug_1419785(self):
        servers, connection = self.standby_history()
        before = self.records(servers)
        self.start_compute_on(B, connection)
        # nova 34 alone starts B over A's guests: they are not destroyed
        # (no evacuation record), but no service manages them any more,
        # and two compute nodes describe the one hypervisor.
        self.assertEqual('up', self.services(B)[0]['state'])
        self.assertEqual({s['id']: 'running' for s in servers},
                         self.guests(connection, servers))
        self.assertEqual(before, self.records(servers))
        self.assertEqual({A, B}, {n.host for n in self.compute_nodes(A)})

    def test_new_standby_over_guests(self):
        self.start_compute(A)
        servers = self.boot(A, 2)
        connection = self.stop_compute(A)
        # nova >= 27 refuses a new service over a hypervisor with guests.
        error = self.assertRaises(nova_exception.InvalidConfiguration,
                                  self.start_compute_on, B, connection)
        self.assertIn('My hypervisor has existing instances', str(error))
        self.assertEqual({s['id']: 'running' for s in servers},
                         self.guests(connection, servers))
