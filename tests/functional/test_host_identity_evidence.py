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
"""host_identity: the evidence its start-up checks weigh.

On real nova 34 (libvirt driver over fakelibvirt), every guard enabled:

* a hypervisor name that differs only by case or by being the
  short form of the other (the resolver gave hostA once and
  hostA.example.com later) is the same hypervisor; a guest of another host
  refuses start-up whether it runs or not; only an *open* migration
  involving this host explains such a guest, not any past one, except
  the stopped leftover of a move from here whose confirm is over;
  ``allow_takeover_from`` no longer starts a service that nova cannot make
  consistent.
* nova bug 1794996 with the guard: a guest whose instance was
  deleted is nova's to clean up, not a refusal.
"""

import json
from unittest import mock

import fixtures

import nova.conf
from nova import context as nova_context
from nova import objects

from nova_guardrails import exception
from nova_guardrails.lab import harness
from nova_guardrails.lab import scenarios
from oslo_utils.fixture import uuidsentinel as uuids

CONF = nova.conf.CONF
A, B, C = 'hostA', 'hostB', 'hostC'


class _Base(harness.GuardrailsTestBase):

    def boot(self, host, count=1):
        return [self._create_server(networks='none', host=host)
                for _ in range(count)]

    def decisions(self):
        with open(CONF.guardrails.report_path) as f:
            return json.load(f)['decisions']

    def services(self, host):
        return self.admin_api.get_services(binary='nova-compute', host=host)

    def hypervisor(self, name):
        """A fake hypervisor whose libvirt hostname is ``name``."""
        return self._get_connection(hostname=name)

    def copy_guest(self, server, from_host, to_connection, running=True):
        """The guest of ``server`` on ``from_host`` also defined on
        ``to_connection`` (a stray copy, or the other host's hypervisor
        seen by a standby).
        """
        conn = self.computes[from_host].driver._host.get_connection()
        xml = conn.lookupByUUIDString(server['id']).XMLDesc(0)
        if running:
            to_connection.createXML(xml, 0)
        else:
            to_connection.defineXML(xml)


class HypervisorNamesTest(_Base):
    """The same hypervisor under another spelling of its name."""

    def assertRefusedOver(self, registered, reported):
        conn = self.hypervisor(registered)
        self.start_compute_on(A, conn)
        self.stop_compute(A)
        conn.hostname = reported
        error = self.assertRaises(exception.StartupRefused,
                                  self.start_compute_on, B, conn)
        message = str(error)
        self.assertIn('hypervisor node(s) %s' % reported, message)
        self.assertIn('host %s' % A, message)
        self.assertIn('registered as %s' % registered, message)
        self.assertEqual([], self.services(B))
        self.assertEqual([A], [n.host for n in self.compute_nodes()])
        [row] = self.decisions()
        self.assertEqual(('refuse_start', 'refused', reported),
                         (row['action'], row['outcome'], row['node']))

    def test_fqdn_of_a_registered_short_name(self):
        self.assertRefusedOver('hostA', 'hostA.example.com')

    def test_short_name_of_a_registered_fqdn(self):
        self.assertRefusedOver('hostA.example.com', 'hostA')

    def test_other_case(self):
        self.assertRefusedOver('hostA', 'HOSTA')

    def test_other_case_of_the_fqdn(self):
        self.assertRefusedOver('hostA.example.com', 'HostA.Example.COM')

    def assertStartsOver(self, registered, reported):
        conn = self.hypervisor(registered)
        self.start_compute_on(A, conn)
        other = self.hypervisor(reported)
        self.start_compute_on(B, other)
        self.assertEqual('up', self.services(B)[0]['state'])

    def test_two_fqdns_with_one_short_name_are_two_hypervisors(self):
        # Both names fully qualified: the resolver gave no short form, so
        # hostA.dc1 and hostA.dc2 are two machines.
        self.assertStartsOver('hostA.dc1.example.com',
                              'hostA.dc2.example.com')

    def test_a_longer_name_is_another_hypervisor(self):
        self.assertStartsOver('hostA', 'hostAB')


class _ForeignGuests(_Base):
    """A guest of another host, with the node check passed (the machine's
    libvirt hostname changed, so no compute node has its name).
    """

    def standby_over_renamed_hypervisor(self, stop_guests):
        """B ran once on a machine since retired; A runs two servers
        (stopped when ``stop_guests``) and dies; A's machine's hostname
        changes; B, an existing service, starts over it with a node
        identity of its own (its own $state_path/compute_id), so neither
        nova's rename check nor a compute node of the same name sees A.
        """
        self.start_compute(B)
        self.stop_compute(B)
        self.start_compute(A)
        servers = self.boot(A, 2)
        if stop_guests:
            servers = [self._stop_server(s) for s in servers]
        conn = self.stop_compute(A)
        conn.hostname = 'node-17'
        return servers, conn

    def start_standby(self, connection):
        saved = self.mock_conn.return_value
        self.mock_conn.return_value = connection
        try:
            with mock.patch('nova.virt.node.get_local_node_uuid',
                            autospec=True, return_value=uuids.standby_node):
                compute = self.start_service('compute', host=B)
                compute.driver._host.get_connection = lambda: connection
        finally:
            self.mock_conn.return_value = saved
        self.computes[B] = compute
        return compute


class ForeignGuestsTest(_ForeignGuests):

    def test_stopped_guests_of_another_host_refuse_start(self):
        servers, conn = self.standby_over_renamed_hypervisor(True)
        error = self.assertRaises(exception.StartupRefused,
                                  self.start_standby, conn)
        message = str(error)
        self.assertIn('2 guest(s)', message)
        for server in servers:
            self.assertIn('%s (host hostA, shutdown)' % server['id'],
                          message)
        # Nothing registered for the machine under its new name.
        self.assertEqual([], self.compute_nodes('node-17'))
        self.assertEqual({'refuse_start'},
                         {r['action'] for r in self.decisions()})
        for server in servers:
            self.assertEqual('shutdown',
                             self.guest_power_state_on(conn, server))

    def test_running_guests_of_another_host_refuse_start(self):
        servers, conn = self.standby_over_renamed_hypervisor(False)
        error = self.assertRaises(exception.StartupRefused,
                                  self.start_standby, conn)
        self.assertIn('2 guest(s)', str(error))
        self.assertEqual([], self.compute_nodes('node-17'))

    def test_takeover_allowed_still_refuses_with_the_steps(self):
        """allow_takeover_from cannot make the takeover: nova has no call
        that moves a compute node or an instance to another host name.
        """
        servers, conn = self.standby_over_renamed_hypervisor(False)
        self.use_nova_conf('[guardrails]\nallow_takeover_from = hostA\n')
        error = self.assertRaises(exception.StartupRefused,
                                  self.start_standby, conn)
        message = str(error)
        for text in ('[guardrails] allow_takeover_from names hostA',
                     'nova has no API or nova-manage command',
                     '[DEFAULT] host = hostA',
                     'compute_id',
                     'openstack compute service delete'):
            self.assertIn(text, message)
        self.assertEqual([], self.compute_nodes('node-17'))
        self.assertEqual({s['id']: 'running' for s in servers},
                         {s['id']: self.guest_power_state_on(conn, s)
                          for s in servers})


class NovaAloneForeignGuestsTest(_ForeignGuests):
    NOVA_CONF = harness.NOVA_ALONE_CONF

    def test_stopped_guests_of_another_host_a_second_node(self):
        """What the guard prevents: nova 34 alone starts B over A's stopped
        guests and registers the machine a second time.
        """
        servers, conn = self.standby_over_renamed_hypervisor(True)
        self.start_standby(conn)
        self.assertEqual(1, len(self.compute_nodes('node-17')))
        self.assertEqual(1, len(self.compute_nodes('hostA')))


class MigrationLinksTest(_Base):
    """Which migration records explain a guest of another host."""

    def setUp(self):
        super().setUp()
        scenarios.fake_disk_migration(self)
        self.flags(allow_resize_to_same_host=False)
        self.start_compute(A)
        self.start_compute(C)
        [self.server] = self.boot(A)

    def migrate_to_c(self):
        return self._migrate_server(self.server, host=C)

    def test_a_past_migration_is_no_link(self):
        """The server moved from A to C long ago (confirmed); its guest
        turns up again on A's hypervisor, running: two copies run.
        """
        self._confirm_resize(self.migrate_to_c())
        conn_a = self.stop_compute(A)
        self.copy_guest(self.server, C, conn_a)
        error = self.assertRaises(exception.StartupRefused,
                                  self.start_compute_on, A, conn_a)
        self.assertIn('%s (host hostC, running)' % self.server['id'],
                      str(error))
        [row] = self.decisions()
        self.assertEqual((self.server['id'], 'refuse_start'),
                         (row['instance_uuid'], row['action']))

    def test_stopped_leftover_of_a_confirmed_move_from_here_is_left(self):
        """nova-compute A died during the confirm's clean-up of a cold
        migration to C: the migration is confirmed, the source guest is
        still defined on A, shut off. nova alone starts and leaves it;
        so does the guard (it refused start-up before: crash matrix,
        resize_confirm and cold_migrate at task_state -> None).
        """
        self._confirm_resize(self.migrate_to_c())
        conn_a = self.stop_compute(A)
        self.copy_guest(self.server, C, conn_a, running=False)
        self.start_compute_on(A, conn_a)
        self.assertEqual('up', self.services(A)[0]['state'])
        [row] = [r for r in self.decisions()
                 if r['instance_uuid'] == self.server['id']]
        self.assertEqual(('leave', 'nova', 'done'),
                         (row['action'], row['executed_by'], row['outcome']))
        self.assertIn('confirmed', row['reason'])
        self.assertEqual('shutdown',
                         self.guest_power_state_on(conn_a, self.server))
        server = self.api.get_server(self.server['id'])
        self.assertEqual((C, 'ACTIVE'), (server['OS-EXT-SRV-ATTR:host'],
                                         server['status']))

    def test_stopped_leftover_of_a_failed_confirm_is_left(self):
        """On a real node: the confirm's clean-up on A failed (the source
        guest could not be undefined): nova marks the migration error, the
        instance ERROR on C, and leaves the guest defined on A, shut off.
        nova alone starts A; so does the guard.
        """
        def confirm_fails(driver, context, migration, instance,
                          network_info):
            raise RuntimeError('undefine of the source guest failed')
        self.migrate_to_c()
        self.useFixture(fixtures.MonkeyPatch(
            scenarios.LIBVIRT_DRIVER + '.confirm_migration', confirm_fails))
        self.api.post_server_action(self.server['id'],
                                    {'confirmResize': None})
        self._wait_for_migration_status(self.server, ['error'])
        conn_a = self.stop_compute(A)
        self.assertEqual('shutdown',
                         self.guest_power_state_on(conn_a, self.server))
        self.start_compute_on(A, conn_a)
        self.assertEqual('up', self.services(A)[0]['state'])
        [row] = [r for r in self.decisions()
                 if r['instance_uuid'] == self.server['id']]
        self.assertEqual(('leave', 'nova'),
                         (row['action'], row['executed_by']))
        self.assertIn(', error (', row['reason'])
        self.assertEqual('shutdown',
                         self.guest_power_state_on(conn_a, self.server))

    def test_stopped_guest_of_a_later_move_elsewhere_refuses(self):
        """Moved from A to C, then from C to B: the latest move is not from
        this host, so a stopped guest on A is not its leftover.
        """
        self.start_compute(B)
        self._confirm_resize(self.migrate_to_c())
        self._confirm_resize(self._migrate_server(self.server, host=B))
        conn_a = self.stop_compute(A)
        self.copy_guest(self.server, B, conn_a, running=False)
        error = self.assertRaises(exception.StartupRefused,
                                  self.start_compute_on, A, conn_a)
        self.assertIn('%s (host hostB, shutdown)' % self.server['id'],
                      str(error))

    def test_an_open_migration_from_here_links(self):
        """A cold migration to C awaiting confirmation: A keeps the source
        guest (powered off) until the confirm. A restarts.
        """
        self.migrate_to_c()
        conn_a = self.stop_compute(A)
        self.assertEqual('shutdown',
                         self.guest_power_state_on(conn_a, self.server))
        self.start_compute_on(A, conn_a)
        self.assertEqual('up', self.services(A)[0]['state'])
        self.assertEqual('shutdown',
                         self.guest_power_state_on(conn_a, self.server))
        # The resize can still be confirmed: A destroys its copy.
        self._confirm_resize(self.server)
        self.assertEqual('pending',
                         self.guest_power_state_on(conn_a, self.server))


class DeletedAfterEvacuationTest(_Base):
    """nova bug 1794996 with the guard: evacuated while A was down, then
    deleted on C; A restarts with the evacuated guest still defined.
    """

    def test_deleted_instance_is_cleaned_up_by_nova(self):
        [server], conn_a = scenarios.evacuate_while_down(self)
        self._delete_server(server)
        # Starts (nova 34 alone starts too; the guard refused before).
        self.start_compute_on(A, conn_a)
        # nova's _destroy_evacuated_instances removed the leftover guest.
        self.assertEqual('pending', self.guest_power_state_on(conn_a,
                                                              server))
        rows = self.decisions()
        self.assertEqual([(server['id'], 'destroy', 'nova', 'done')],
                         [(r['instance_uuid'], r['action'],
                           r['executed_by'], r['outcome']) for r in rows
                          if r['action'] != 'report'])
        self.assertIn('deleted', rows[-1]['reason'])

    def test_deleted_instance_without_evacuation_is_reported(self):
        """A guest of a server deleted elsewhere (no migration at all): nova's
        _cleanup_running_deleted_instances reaps it; start-up goes on.
        """
        self.start_compute(A)
        self.start_compute(C)
        [server] = self.boot(C)
        conn_a = self.stop_compute(A)
        self.copy_guest(server, C, conn_a)
        self._delete_server(server)
        self.start_compute_on(A, conn_a)
        self.assertEqual('up', self.services(A)[0]['state'])
        [row] = self.decisions()
        self.assertEqual((server['id'], 'report', 'nova'),
                         (row['instance_uuid'], row['action'],
                          row['executed_by']))
        self.assertIn('deleted', row['reason'])
        ctxt = nova_context.get_admin_context(read_deleted='yes')
        self.assertTrue(objects.Instance.get_by_uuid(ctxt,
                                                     server['id']).deleted)
