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
"""Guest operations interrupted in the compute, on real nova 34.

rescue, unrescue, backup, password change and pause, each killed (a
BaseException) at a crash point inside the libvirt driver; nova-compute is
restarted keeping the fake hypervisor's domains. Guarded (recovery_table)
the server ends stable and consistent with its guest; nova alone it stays
stuck in the task_state (none of these is handled by nova 34's
``_init_instance``, or pausing only with the guest running).
"""

import os
import threading

import fixtures
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.api import client as api_client
from nova.virt.libvirt import utils as libvirt_utils

from nova_guardrails.lab import harness
from nova_guardrails.lab import scenarios

DOMAIN = scenarios.DOMAIN
DRIVER = scenarios.LIBVIRT_DRIVER
HOST = scenarios.HOST
LIBVIRT_UTILS = 'nova.virt.libvirt.utils'

#: The rescue disk the libvirt driver gives a rescue guest
#: (<instance dir>/disk.rescue).
RESCUE_DISK = 'disk.rescue'

#: An image with the qemu guest agent: the libvirt driver sets the admin
#: password only through it.
AGENT_IMAGE = '5b8a3d6e-1c2f-4e7a-9f0b-7d4c2e1a9b63'


class _Base(harness.GuardrailsTestBase):

    def setUp(self):
        super().setUp()
        self._conn = None

    def boot(self, **kwargs):
        """Boot a server on compute1 and give it its instance directory.

        nova's functional base mocks the driver's _create_image, which
        creates it; rescue writes unrescue.xml there.
        """
        if HOST not in self.computes:
            self.start_compute(HOST)
        server = self._create_server(networks='none', **kwargs)
        os.makedirs(libvirt_utils.get_instance_path(self.instance(server)),
                    exist_ok=True)
        return server

    def interrupt(self, server, crashed, action):
        """Ask for ``action``, wait for the crash, restart compute1; returns
        (state at the crash, state after, guest after, decision).
        """
        if 'changePassword' in action:
            self._call_in_background(server, action)
            self.wait_for_crash(crashed)
        else:
            scenarios.interrupt(self, server, crashed, action)
        at_crash = self.server_states(server)
        self._conn = self.computes[HOST].driver._host.get_connection()
        self.xml_at_crash = self.xml(server)
        self.guest_at_crash = self.guest_power_state_on(self._conn, server)
        self.restart_compute_service(HOST)
        after = self.server_states(server)
        return (at_crash, after, self.guest_power_state_on(self._conn, server),
                scenarios.decision(server))

    def _call_in_background(self, server, action):
        """changePassword is an RPC call from nova-api to the compute: its
        request would wait for a reply the crashed compute never sends.
        It runs in a thread, answered by a MessagingTimeout (500) once
        rpc_response_timeout has passed.
        """
        self.flags(rpc_response_timeout=2)

        def post():
            try:
                self.api.post_server_action(server['id'], action)
            except api_client.OpenStackApiException:
                pass  # the 500 of the MessagingTimeout
        thread = threading.Thread(target=post, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 30)

    def xml(self, server):
        """The domain XML of the server's guest on compute1's hypervisor."""
        conn = self._conn or self.computes[HOST].driver._host.get_connection()
        try:
            return conn.lookupByUUIDString(server['id']).XMLDesc(0)
        except fakelibvirt.libvirtError:
            return None

    def rescued_server(self):
        server = self.boot()
        self.api.post_server_action(server['id'],
                                    {'rescue': {'adminPass': 'rescue'}})
        server = self._wait_for_state_change(server, 'RESCUE')
        self.assertIn(RESCUE_DISK, self.xml(server))
        return server

    def error_server(self):
        server = self.boot()
        self.api.post_server_action(server['id'],
                                    {'os-resetState': {'state': 'error'}})
        return self._wait_for_server_parameter(
            server, {'OS-EXT-STS:vm_state': 'error'})

    def agent_server(self):
        """A server booted from an image with hw_qemu_guest_agent=yes."""
        image = dict(self.glance.image1, id=AGENT_IMAGE,
                     name='agent-image',
                     properties=dict(self.glance.image1['properties'],
                                     hw_qemu_guest_agent='yes'))
        self.glance.create(None, image)
        return self.boot(image_uuid=AGENT_IMAGE)

    # Crash points inside the libvirt driver.

    def crash_rescue_guest_started(self):
        """After the driver created and started the rescue guest."""
        return self.crash_at(
            DRIVER, '_create_guest', when='after',
            condition=lambda drv, context, xml, *a, **kw: RESCUE_DISK in xml)

    def crash_unrescue_xml_loaded(self):
        """Inside unrescue, the rescue guest still running: the driver read
        unrescue.xml and is about to destroy the rescue guest.
        """
        return self.crash_at(
            LIBVIRT_UTILS, 'load_file', when='after',
            condition=lambda path, *a, **kw: path.endswith('unrescue.xml'))

    def crash_unrescue_guest_destroyed(self):
        """Inside unrescue, the rescue guest destroyed, the instance's own
        not yet created.
        """
        return self.crash_at(DRIVER, '_destroy', when='after')

    def crash_backup(self):
        """Inside the driver snapshot, before it moves the task_state on
        (image_pending_upload): the task_state is still image_backup.
        """
        return self.crash_at(DRIVER, '_suspend_guest_for_snapshot',
                             when='after')

    def crash_unrescue_failed(self):
        """The instance's own guest fails to start in unrescue; nova sets
        vm_state error (_error_out_instance_on_exception, task_state kept
        for reverts_task_state to clear) and dies before clearing it.
        Returns (crash event, switch: clear it to let guests start).
        """
        failing = [True]
        original = fakelibvirt.Domain.createWithFlags

        def create_with_flags(domain, flags):
            if failing:
                raise fakelibvirt.make_libvirtError(
                    fakelibvirt.libvirtError,
                    'internal error: qemu died at start-up',
                    error_code=fakelibvirt.VIR_ERR_INTERNAL_ERROR)
            return original(domain, flags)
        self.useFixture(fixtures.MonkeyPatch(DOMAIN + '.createWithFlags',
                                             create_with_flags))
        return (self.crash_at('nova.compute.manager.ComputeManager',
                              '_set_instance_obj_error_state', when='after'),
                failing)

    @staticmethod
    def backup():
        return {'createBackup': {'name': 'backup', 'backup_type': 'daily',
                                 'rotation': 1}}


class GuardedGuestOpsTest(_Base):
    NOVA_CONF = harness.GUARDED_NOVA_CONF

    def assertOwnGuestRunning(self, server, guest):
        self.assertEqual('running', guest)
        xml = self.xml(server)
        self.assertIsNotNone(xml)
        self.assertNotIn(RESCUE_DISK, xml)

    # rescuing

    def test_rescuing_rescue_guest_started(self):
        """The rescue guest runs, nova-compute died before recording the
        rescue: a hard reboot brings the instance's own guest back.
        """
        server = self.boot()
        at_crash, after, guest, decision = self.interrupt(
            server, self.crash_rescue_guest_started(),
            {'rescue': {'adminPass': 'rescue'}})
        self.assertEqual(('active', 'rescuing'), at_crash[:2])
        self.assertEqual('running', self.guest_at_crash)
        self.assertIn(RESCUE_DISK, self.xml_at_crash)
        self.assertEqual(('active', None, 'running'), after)
        self.assertOwnGuestRunning(server, guest)
        self.assertGuardrailsDecision(decision, 'reboot_hard')
        # The recovered server can be rescued again.
        self.api.post_server_action(server['id'],
                                    {'rescue': {'adminPass': 'rescue'}})
        self._wait_for_state_change(server, 'RESCUE')
        self.assertIn(RESCUE_DISK, self.xml(server))

    def test_rescuing_before_driver(self):
        """The guest was powered off for the rescue, the driver never ran."""
        server = self.boot()
        at_crash, after, guest, decision = self.interrupt(
            server, self.crash_at(DRIVER, 'rescue', when='before'),
            {'rescue': {'adminPass': 'rescue'}})
        self.assertEqual(('active', 'rescuing'), at_crash[:2])
        self.assertEqual('shutdown', self.guest_at_crash)
        self.assertEqual(('active', None, 'running'), after)
        self.assertOwnGuestRunning(server, guest)
        self.assertGuardrailsDecision(decision, 'reboot_hard')

    # unrescuing

    def test_unrescuing_rescue_guest_running(self):
        """Inside unrescue, the rescue guest still running: the instance's
        own guest must come back, vm_state active.
        """
        server = self.rescued_server()
        at_crash, after, guest, decision = self.interrupt(
            server, self.crash_unrescue_xml_loaded(), {'unrescue': None})
        self.assertEqual(('rescued', 'unrescuing'), at_crash[:2])
        self.assertIn(RESCUE_DISK, self.xml_at_crash)
        self.assertGuardrailsDecision(decision, 'reboot_hard')
        self.assertOwnGuestRunning(server, guest)
        self.assertEqual(('active', None, 'running'), after)
        # Rescue and unrescue work again.
        self.api.post_server_action(server['id'],
                                    {'rescue': {'adminPass': 'rescue'}})
        self._wait_for_state_change(server, 'RESCUE')
        self.api.post_server_action(server['id'], {'unrescue': None})
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertOwnGuestRunning(server, 'running')

    def test_unrescuing_guest_destroyed(self):
        """Inside unrescue, the rescue guest destroyed and the instance's
        own not created yet.
        """
        server = self.rescued_server()
        at_crash, after, guest, decision = self.interrupt(
            server, self.crash_unrescue_guest_destroyed(),
            {'unrescue': None})
        self.assertEqual(('rescued', 'unrescuing'), at_crash[:2])
        self.assertEqual('shutdown', self.guest_at_crash)
        self.assertGuardrailsDecision(decision, 'reboot_hard')
        self.assertOwnGuestRunning(server, guest)
        self.assertEqual(('active', None, 'running'), after)

    # image_backup

    def test_image_backup_live(self):
        """Live snapshot of a running guest: the backup is abandoned, the
        server stays active.
        """
        server = self.boot()
        at_crash, after, guest, decision = self.interrupt(
            server, self.crash_backup(), self.backup())
        self.assertEqual(('active', 'image_backup'), at_crash[:2])
        self.assertEqual(('active', None), after[:2])
        self.assertEqual('running', guest)
        self.assertGuardrailsDecision(decision, 'clear_to_guest')

    def test_image_backup_guest_saved_for_cold_snapshot(self):
        """Cold snapshot: the driver saved (suspended) the running guest
        before copying its disk; vm_state follows the guest: stopped, and
        the server starts again.
        """
        self.flags(disable_libvirt_livesnapshot=True, group='workarounds')
        server = self.boot()
        at_crash, after, guest, decision = self.interrupt(
            server, self.crash_backup(), self.backup())
        self.assertEqual(('active', 'image_backup'), at_crash[:2])
        self.assertEqual('shutdown', self.guest_at_crash)
        self.assertEqual(('stopped', None), after[:2])
        self.assertEqual('shutdown', guest)
        self.assertGuardrailsDecision(decision, 'clear_to_guest')
        self.api.post_server_action(server['id'], {'os-start': None})
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('running', self.guest_power_state(HOST, server))

    # updating_password

    def test_updating_password(self):
        """The guest agent set the password, nova-compute died before
        recording it.
        """
        server = self.agent_server()
        at_crash, after, guest, decision = self.interrupt(
            server, self.crash_at(DOMAIN, 'setUserPassword', when='after'),
            {'changePassword': {'adminPass': 'new-password'}})
        self.assertEqual(('active', 'updating_password'), at_crash[:2])
        self.assertEqual(('active', None), after[:2])
        self.assertEqual('running', guest)
        self.assertGuardrailsDecision(decision, 'clear_to_guest')
        # The password can be changed again.
        self.api.post_server_action(
            server['id'], {'changePassword': {'adminPass': 'again'}})
        self._wait_for_server_parameter(
            server, {'OS-EXT-STS:task_state': None,
                     'OS-EXT-STS:vm_state': 'active'})

    # pausing

    def test_pausing_guest_paused(self):
        """The driver paused the guest, nova-compute died before recording
        it: vm_state paused; the server unpauses.
        """
        server = self.boot()
        at_crash, after, guest, decision = self.interrupt(
            server, self.crash_at(DRIVER, 'pause', when='after'),
            {'pause': None})
        self.assertEqual(('active', 'pausing'), at_crash[:2])
        self.assertEqual('paused', self.guest_at_crash)
        self.assertEqual(('paused', None), after[:2])
        self.assertEqual('paused', guest)
        self.assertGuardrailsDecision(decision, 'clear_to_guest')
        self.api.post_server_action(server['id'], {'unpause': None})
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('running', self.guest_power_state(HOST, server))

    # vm_state error

    def test_error_with_task_state(self):
        """A server in error (os-resetState) is rescued (nova-api allows it
        from error); nova-compute dies inside the driver: the task_state is
        cleared, vm_state stays error, the guest is not touched; a hard
        reboot then resets the server to its own guest.
        """
        server = self.error_server()
        at_crash, after, guest, decision = self.interrupt(
            server, self.crash_rescue_guest_started(),
            {'rescue': {'adminPass': 'rescue'}})
        self.assertEqual(('error', 'rescuing'), at_crash[:2])
        self.assertEqual(('error', None), after[:2])
        self.assertEqual('running', guest)
        self.assertEqual(self.xml_at_crash, self.xml(server))
        self.assertGuardrailsDecision(decision, 'clear')
        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'HARD'}})
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertOwnGuestRunning(server, 'running')

    def test_error_unrescue_failed(self):
        """unrescue failed in the driver: nova set vm_state error and died
        before clearing the task_state; it is cleared, the guest (not
        started) is untouched, and a hard reboot resets the server.
        """
        server = self.rescued_server()
        crashed, failing = self.crash_unrescue_failed()
        at_crash, after, guest, decision = self.interrupt(
            server, crashed, {'unrescue': None})
        self.assertEqual(('error', 'unrescuing'), at_crash[:2])
        self.assertEqual(('error', None), after[:2])
        self.assertEqual(self.guest_at_crash, guest)
        self.assertNotEqual('running', guest)
        self.assertGuardrailsDecision(decision, 'clear')
        failing.clear()
        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'HARD'}})
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertOwnGuestRunning(server, 'running')


class NovaAloneGuestOpsTest(_Base):
    """The same crashes with nova alone: the instance stays stuck."""

    NOVA_CONF = harness.NOVA_ALONE_CONF

    def test_rescuing_rescue_guest_started(self):
        server = self.boot()
        _, after, guest, _ = self.interrupt(
            server, self.crash_rescue_guest_started(),
            {'rescue': {'adminPass': 'rescue'}})
        self.assertEqual(('active', 'rescuing'), after[:2])
        self.assertEqual('running', guest)
        self.assertIn(RESCUE_DISK, self.xml(server))

    def test_unrescuing_rescue_guest_running(self):
        server = self.rescued_server()
        _, after, guest, _ = self.interrupt(
            server, self.crash_unrescue_xml_loaded(), {'unrescue': None})
        self.assertEqual(('rescued', 'unrescuing'), after[:2])
        self.assertEqual('running', guest)
        self.assertIn(RESCUE_DISK, self.xml(server))

    def test_image_backup_live(self):
        server = self.boot()
        _, after, guest, _ = self.interrupt(
            server, self.crash_backup(), self.backup())
        self.assertEqual(('active', 'image_backup'), after[:2])
        self.assertEqual('running', guest)

    def test_updating_password(self):
        server = self.agent_server()
        _, after, guest, _ = self.interrupt(
            server, self.crash_at(DOMAIN, 'setUserPassword', when='after'),
            {'changePassword': {'adminPass': 'new-password'}})
        self.assertEqual(('active', 'updating_password'), after[:2])
        self.assertEqual('running', guest)

    def test_pausing_guest_paused(self):
        server = self.boot()
        _, after, guest, _ = self.interrupt(
            server, self.crash_at(DRIVER, 'pause', when='after'),
            {'pause': None})
        self.assertEqual(('active', 'pausing'), after[:2])
        self.assertEqual('paused', guest)

    def test_error_with_task_state(self):
        server = self.error_server()
        _, after, guest, _ = self.interrupt(
            server, self.crash_rescue_guest_started(),
            {'rescue': {'adminPass': 'rescue'}})
        self.assertEqual(('error', 'rescuing'), after[:2])
        self.assertEqual('running', guest)

    def test_error_unrescue_failed(self):
        server = self.rescued_server()
        crashed, _ = self.crash_unrescue_failed()
        _, after, guest, _ = self.interrupt(
            server, crashed, {'unrescue': None})
        self.assertEqual(('error', 'unrescuing'), after[:2])
        self.assertNotEqual('running', guest)
