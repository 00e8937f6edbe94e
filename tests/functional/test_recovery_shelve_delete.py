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
"""Shelve, shelve offload, soft delete and restore interrupted in the
compute, on real nova 34.

Each test runs the real operation through nova's API, kills nova-compute
(a BaseException) at a crash point inside it, restarts the compute service
keeping the fake hypervisor's domains, and asserts where the server ends:
guarded (recovery_table) it is stable and consistent with its guest; nova
alone it stays stuck in the task_state (nova 34's ``_init_instance``
handles none of shelving, shelving_image_pending_upload,
shelving_image_uploading, shelving_offloading and soft-deleting, and skips
every soft-deleted instance, so restoring too).

unshelving is not reached by a crash of nova-compute: nova-api sets it and
casts to the conductor; for a SHELVED instance the conductor replaces it
(powering-on) before it casts start_instance to the host, and a
SHELVED_OFFLOADED instance has no host (nova-compute's start-up never lists
it) until the destination's unshelve_instance, whose first save is
spawning, a build state nova's own ``_init_instance`` settles. An instance
of this host stays in unshelving only when the conductor dies between the
two (or the cast is lost): the unshelving tests crash the conductor, then
restart compute1.
"""

import os

from nova.virt.libvirt import utils as libvirt_utils

from nova_guardrails.lab import harness
from nova_guardrails.lab import scenarios

DRIVER = scenarios.LIBVIRT_DRIVER
HOST = scenarios.HOST
IMAGE_API = 'nova.image.glance.API'
CONDUCTOR = 'nova.conductor.manager.ComputeTaskManager'


class _Base(harness.GuardrailsTestBase):

    def setUp(self):
        super().setUp()
        # Shelve keeps the instance on its host (SHELVED) until the user
        # offloads it; the tests that offload at once say so.
        self.flags(shelved_offload_time=-1)

    def boot(self):
        """Boot a server on compute1 with an instance directory holding a
        root disk file (nova's functional base mocks the driver's
        _create_image, which creates them).
        """
        server = scenarios.boot(self)
        path = libvirt_utils.get_instance_path(self.instance(server))
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, 'disk'), 'wb') as f:
            f.write(b'root disk')
        return server

    def disk_on_host(self, server):
        path = libvirt_utils.get_instance_path(self.instance(server))
        return os.path.exists(os.path.join(path, 'disk'))

    def interrupt(self, server, crashed, action):
        """Ask for ``action`` (a server action, or a function making the
        request), wait for the crash, restart compute1; returns (state at
        the crash, state after, guest after, decision).
        """
        if callable(action):
            action()
            self.wait_for_crash(crashed)
        else:
            scenarios.interrupt(self, server, crashed, action)
        at_crash = self.server_states(server)
        self.conn = self.computes[HOST].driver._host.get_connection()
        self.guest_at_crash = self.guest_power_state_on(self.conn, server)
        self.restart_compute_service(HOST)
        after = self.server_states(server)
        return (at_crash, after, self.guest_power_state_on(self.conn, server),
                scenarios.decision(server))

    def shelved_server(self):
        server = self.boot()
        self.api.post_server_action(server['id'], {'shelve': None})
        return self._wait_for_state_change(server, 'SHELVED')

    def soft_delete_on(self):
        """DELETE soft-deletes from now on."""
        self.flags(reclaim_instance_interval=3600)

    def soft_deleted_server(self):
        server = self.boot()
        self.soft_delete_on()
        self.api.delete_server(server['id'])
        return self._wait_for_state_change(server, 'SOFT_DELETED')

    def allocations(self, server):
        return self._get_allocations_by_server_uuid(server['id'])

    # Crashes -----------------------------------------------------------

    def crash_shelving(self, server):
        """shelve: the guest is powered off, the snapshot not started."""
        return self.interrupt(
            server, self.crash_at(DRIVER, 'snapshot', when='before'),
            {'shelve': None})

    def crash_shelving_image_pending_upload(self, server):
        """shelve: the snapshot recorded shelving_image_pending_upload."""
        return self.interrupt(
            server, self.crash_at_task_state('shelving_image_pending_upload',
                                             when='after'),
            {'shelve': None})

    def crash_shelving_image_uploading(self, server):
        """shelve: the driver extracted the snapshot and dies uploading
        it to the image service (task_state shelving_image_uploading).
        """
        return self.interrupt(
            server, self.crash_at(IMAGE_API, 'update', when='before'),
            {'shelve': None})

    def crash_shelve_offload_after_destroy(self, server):
        """shelveOffload of a SHELVED server: the guest is destroyed, the
        allocations and the record are not updated yet.
        """
        return self.interrupt(
            server, self.crash_at(DRIVER, 'destroy', when='after'),
            {'shelveOffload': None})

    def crash_unshelving(self, server):
        """unshelve of a SHELVED server: the conductor dies before it
        moves the task_state on and casts start_instance.
        """
        return self.interrupt(
            server, self.crash_at(CONDUCTOR, 'unshelve_instance',
                                  when='before'),
            {'unshelve': None})

    def crash_soft_deleting(self, server):
        """DELETE with reclaim_instance_interval: dies before the driver
        powers the guest off.
        """
        self.soft_delete_on()
        return self.interrupt(
            server, self.crash_at(DRIVER, 'power_off', when='before'),
            lambda: self.api.delete_server(server['id']))

    def crash_restoring(self, server):
        """restore of a soft-deleted server: dies before the driver powers
        the guest on.
        """
        return self.interrupt(
            server, self.crash_at(DRIVER, 'power_on', when='before'),
            {'restore': None})


class GuardedShelveDeleteTest(_Base):
    NOVA_CONF = harness.GUARDED_NOVA_CONF

    def assertKeptStopped(self, server, after, guest):
        """clear_to_guest of a shelve abandoned with the guest off: the
        server stays on this host, stopped, with its guest and disk.
        """
        self.assertEqual(('stopped', None), after[:2])
        self.assertEqual('shutdown', guest)
        self.assertIsNotNone(self.domain(HOST, server))
        self.assertTrue(self.disk_on_host(server))
        self.assertEqual(HOST, self.instance(server).host)
        self.assertNotEqual({}, self.allocations(server))

    def test_shelving(self):
        server = self.boot()
        at_crash, after, guest, decision = self.crash_shelving(server)
        self.assertEqual(('active', 'shelving'), at_crash[:2])
        self.assertEqual('shutdown', self.guest_at_crash)
        self.assertKeptStopped(server, after, guest)
        self.assertGuardrailsDecision(decision, 'clear_to_guest')
        # The user shelves again: it completes.
        self.api.post_server_action(server['id'], {'shelve': None})
        self._wait_for_state_change(server, 'SHELVED')
        self.assertEqual(('shelved', None), self.server_states(server)[:2])

    def test_shelving_image_pending_upload(self):
        server = self.boot()
        at_crash, after, guest, decision = (
            self.crash_shelving_image_pending_upload(server))
        self.assertEqual(('active', 'shelving_image_pending_upload'),
                         at_crash[:2])
        self.assertKeptStopped(server, after, guest)
        self.assertGuardrailsDecision(decision, 'clear_to_guest')
        # Started again, it runs.
        self.api.post_server_action(server['id'], {'os-start': None})
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('running', self.guest_power_state(HOST, server))

    def test_shelving_image_uploading(self):
        server = self.boot()
        at_crash, after, guest, decision = (
            self.crash_shelving_image_uploading(server))
        self.assertEqual(('active', 'shelving_image_uploading'),
                         at_crash[:2])
        self.assertKeptStopped(server, after, guest)
        self.assertGuardrailsDecision(decision, 'clear_to_guest')

    def test_shelving_paused_guest(self):
        """Shelve of a paused server: a paused guest is powered off too
        (not cleanly): the server ends stopped, not paused.
        """
        server = self.boot()
        self.api.post_server_action(server['id'], {'pause': None})
        self._wait_for_state_change(server, 'PAUSED')
        at_crash, after, guest, decision = self.crash_shelving(server)
        self.assertEqual(('paused', 'shelving'), at_crash[:2])
        self.assertKeptStopped(server, after, guest)
        self.assertGuardrailsDecision(decision, 'clear_to_guest')

    def test_shelving_offloading(self):
        server = self.shelved_server()
        self.assertNotEqual({}, self.allocations(server))
        at_crash, after, guest, decision = (
            self.crash_shelve_offload_after_destroy(server))
        self.assertEqual(('shelved', 'shelving_offloading'), at_crash[:2])
        self.assertEqual('pending', self.guest_at_crash)
        self.assertEqual(('shelved_offloaded', None), after[:2])
        self.assertEqual('pending', guest)
        self.assertIsNone(self.domain(HOST, server))
        self.assertEqual({}, self.allocations(server))
        self.assertIsNone(self.instance(server).host)
        self.assertIsNone(self.instance(server).node)
        self.assertGuardrailsDecision(decision, 'rerun_shelve_offload')
        # The offloaded server unshelves.
        self.api.post_server_action(server['id'], {'unshelve': None})
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('running', self.guest_power_state(HOST, server))

    def test_shelving_offloading_guest_still_defined(self):
        """shelved_offload_time = 0: shelve offloads at once; dies in the
        offload before the driver destroys the guest.
        """
        self.flags(shelved_offload_time=0)
        server = self.boot()
        at_crash, after, guest, decision = self.interrupt(
            server, self.crash_at(DRIVER, 'destroy', when='before'),
            {'shelve': None})
        self.assertEqual(('shelved', 'shelving_offloading'), at_crash[:2])
        self.assertEqual('shutdown', self.guest_at_crash)
        self.assertEqual(('shelved_offloaded', None), after[:2])
        self.assertEqual('pending', guest)
        self.assertIsNone(self.domain(HOST, server))
        self.assertEqual({}, self.allocations(server))
        self.assertIsNone(self.instance(server).host)
        self.assertGuardrailsDecision(decision, 'rerun_shelve_offload')

    def test_soft_deleting(self):
        server = self.boot()
        at_crash, after, guest, decision = self.crash_soft_deleting(server)
        self.assertEqual(('active', 'soft-deleting'), at_crash[:2])
        self.assertEqual('running', self.guest_at_crash)
        self.assertEqual(('soft-delete', None, 'shutdown'), after)
        self.assertEqual('shutdown', guest)
        self.assertGuardrailsDecision(decision, 'rerun_soft_delete')
        # Still restorable.
        self.api.post_server_action(server['id'], {'restore': None})
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual(('active', None, 'running'),
                         self.server_states(server))
        self.assertEqual('running', self.guest_power_state(HOST, server))

    def test_restoring(self):
        server = self.soft_deleted_server()
        self.assertEqual('shutdown', self.guest_power_state(HOST, server))
        at_crash, after, guest, decision = self.crash_restoring(server)
        self.assertEqual(('soft-delete', 'restoring'), at_crash[:2])
        self.assertEqual('shutdown', self.guest_at_crash)
        self.assertEqual(('active', None, 'running'), after)
        self.assertEqual('running', guest)
        self.assertGuardrailsDecision(decision, 'rerun_restore')


class GuardedUnshelvingTest(_Base):
    """unshelving is a task_state nova-api sets: with no compute event on
    the unshelve action the guard first leaves it alone as a request that
    may still be queued, then, once [guardrails] queued_grace_seconds
    passed with nothing moved, applies the table.
    """

    NOVA_CONF = harness.GUARDED_NOVA_CONF + 'queued_grace_seconds = 1\n'

    def test_unshelving(self):
        server = self.shelved_server()
        at_crash, after, guest, decision = self.crash_unshelving(server)
        self.assertEqual(('shelved', 'unshelving'), at_crash[:2])
        self.assertEqual('shutdown', self.guest_at_crash)
        # Start-up: left alone (the request may still be queued).
        self.assertEqual(('shelved', 'unshelving'), after[:2])
        self.assertEqual(('queued', 'guardrails'),
                         (decision['action'], decision['executed_by']))
        # After the grace period: cleared, the server stays shelved.
        self.wait_until(lambda: self.server_states(server)[1] is None,
                        timeout=15)
        self.wait_until(
            lambda: scenarios.decision(server)['action'] != 'queued',
            timeout=15)
        self.assertEqual(('shelved', None), self.server_states(server)[:2])
        self.assertEqual('shutdown', self.guest_power_state(HOST, server))
        self.assertEqual(HOST, self.instance(server).host)
        decision = scenarios.decision(server)
        self.assertEqual(('clear', 'guardrails', 'done'),
                         (decision['action'], decision['executed_by'],
                          decision['outcome']))
        # The user unshelves again: it runs.
        self.api.post_server_action(server['id'], {'unshelve': None})
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('running', self.guest_power_state(HOST, server))


class NovaAloneShelveDeleteTest(_Base):
    """The same crashes with nova alone: the instance stays stuck."""

    NOVA_CONF = harness.NOVA_ALONE_CONF

    def test_shelving(self):
        server = self.boot()
        _, after, guest, _ = self.crash_shelving(server)
        self.assertEqual(('active', 'shelving'), after[:2])
        self.assertEqual('shutdown', guest)

    def test_shelving_image_pending_upload(self):
        server = self.boot()
        _, after, guest, _ = self.crash_shelving_image_pending_upload(server)
        self.assertEqual(('active', 'shelving_image_pending_upload'),
                         after[:2])
        self.assertEqual('shutdown', guest)

    def test_shelving_image_uploading(self):
        server = self.boot()
        _, after, guest, _ = self.crash_shelving_image_uploading(server)
        self.assertEqual(('active', 'shelving_image_uploading'), after[:2])
        self.assertEqual('shutdown', guest)

    def test_shelving_offloading(self):
        server = self.shelved_server()
        _, after, guest, _ = self.crash_shelve_offload_after_destroy(server)
        self.assertEqual(('shelved', 'shelving_offloading'), after[:2])
        self.assertEqual('pending', guest)
        # The server still holds its allocations and its host.
        self.assertNotEqual({}, self.allocations(server))
        self.assertEqual(HOST, self.instance(server).host)

    def test_unshelving(self):
        server = self.shelved_server()
        _, after, guest, _ = self.crash_unshelving(server)
        self.assertEqual(('shelved', 'unshelving'), after[:2])
        self.assertEqual('shutdown', guest)

    def test_soft_deleting(self):
        server = self.boot()
        _, after, guest, _ = self.crash_soft_deleting(server)
        self.assertEqual(('active', 'soft-deleting'), after[:2])
        self.assertEqual('running', guest)

    def test_restoring(self):
        server = self.soft_deleted_server()
        _, after, guest, _ = self.crash_restoring(server)
        self.assertEqual(('soft-delete', 'restoring'), after[:2])
        self.assertEqual('shutdown', guest)
