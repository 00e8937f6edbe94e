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
"""GuardrailsDriver loads from nova.conf into a real nova-compute (item 2)."""

from nova.compute import manager as compute_manager
from nova.virt.libvirt import driver as libvirt_driver

import nova.conf
from nova_guardrails import driver as guardrails_driver
from nova_guardrails import exception
from nova_guardrails.lab import harness

CONF = nova.conf.CONF

# ComputeManager's own methods, before any compute service is built.
CLASS_METHODS = {name: getattr(compute_manager.ComputeManager, name)
                 for name in ('init_host', '_init_instance',
                              '_destroy_evacuated_instances')}


class DriverLoadingTest(harness.GuardrailsTestBase):

    def test_loaded_from_nova_conf_wrapping_the_real_driver(self):
        self.start_compute('compute1')
        self.start_compute('compute2')
        manager = self.computes['compute1'].manager
        other = self.computes['compute2'].manager
        self.assertIsInstance(manager.driver,
                              guardrails_driver.GuardrailsDriver)
        real = manager.driver._guardrails_driver
        self.assertIsInstance(real, libvirt_driver.LibvirtDriver)
        # Attributes reach the real driver, both ways.
        self.assertIs(real._host, manager.driver._host)
        self.assertIs(real.capabilities, manager.driver.capabilities)
        # The stevedore-loaded guard is the one nova.conf names.
        self.assertEqual(['recovery_table', 'host_identity', 'revert_vif',
                          'rbd_root_disk'],
                         [g.name for g in
                          manager.driver._guardrails_guards])
        # Each manager instance has its own wrappers; the class is intact.
        for name, original in CLASS_METHODS.items():
            self.assertIn(name, vars(manager))
            self.assertIn(name, vars(other))
            self.assertIsNot(vars(manager)[name], vars(other)[name])
            self.assertIs(original, getattr(compute_manager.ComputeManager,
                                            name))
        self.assertIs(manager, manager.driver._guardrails_manager)

    def test_attribute_writes_reach_the_real_driver(self):
        self.start_compute('compute1')
        wrapper = self.computes['compute1'].manager.driver
        real = wrapper._guardrails_driver
        wrapper.guardrails_test_attribute = 42
        self.assertEqual(42, real.guardrails_test_attribute)
        self.assertNotIn('guardrails_test_attribute', vars(wrapper))
        del wrapper.guardrails_test_attribute
        self.assertFalse(hasattr(real, 'guardrails_test_attribute'))

    def test_service_works_through_the_wrapper(self):
        self.start_compute('compute1')
        server = self._create_server(networks='none')
        self._reboot_server(server, hard=True)
        self.assertEqual('running',
                         self.guest_power_state('compute1', server))


class RefusedConfigurationTest(harness.GuardrailsTestBase):
    """A bad [guardrails] option stops nova-compute with its name."""

    def assertRefused(self, conf_text, *expected):
        self.use_nova_conf(conf_text)
        error = self.assertRaises(exception.GuardrailsConfigError,
                                  self.start_compute, 'compute1')
        for text in expected:
            self.assertIn(text, str(error))
        # No compute service came up for the host.
        self.assertEqual(
            [], self.admin_api.get_services(binary='nova-compute'))
        return error

    def test_unknown_guard(self):
        self.assertRefused(
            '[guardrails]\nenabled_guards = recovery_table, no_such_guard\n',
            '[guardrails] enabled_guards', 'no_such_guard',
            'recovery_table')

    def test_repeated_guard(self):
        self.assertRefused(
            '[guardrails]\nenabled_guards = recovery_table,recovery_table\n',
            '[guardrails] enabled_guards', 'more than once')

    def test_missing_driver(self):
        self.assertRefused('[guardrails]\ndriver =\n',
                           '[guardrails] driver is required')

    def test_unloadable_driver(self):
        self.assertRefused('[guardrails]\ndriver = nosuch.Driver\n',
                           '[guardrails] driver = nosuch.Driver cannot be '
                           'loaded')

    def test_wrapping_itself(self):
        self.assertRefused(
            '[guardrails]\ndriver = guardrails.GuardrailsDriver\n',
            '[guardrails] driver = guardrails.GuardrailsDriver would wrap')

    def test_ironic_refused(self):
        self.assertRefused('[guardrails]\ndriver = ironic.IronicDriver\n',
                           '[guardrails] driver = ironic.IronicDriver is not '
                           'supported')

    def test_invalid_values(self):
        for text, name in (
                ('revert_vif_policy = sometimes', 'revert_vif_policy'),
                ('max_startup_destroys = -1', 'max_startup_destroys'),
                ('rbd_trash_delay = soon', 'rbd_trash_delay')):
            self.use_nova_conf('[guardrails]\n%s\n' % text)
            error = self.assertRaises(exception.GuardrailsConfigError,
                                      self.start_compute, 'compute1')
            self.assertIn('[guardrails] %s is invalid' % name, str(error))
            self.use_nova_conf('[guardrails]\n%s\n' % text.replace(
                text.split(' = ')[1], {'revert_vif_policy': 'fix',
                                       'max_startup_destroys': '1',
                                       'rbd_trash_delay': '0'}[name]))

    def test_bad_recovery_overrides(self):
        self.assertRefused(
            '[guardrails]\nrecovery_overrides = resize_reverting:explode\n',
            '[guardrails] recovery_overrides', 'resize_reverting:explode',
            'clear, clear_to_guest, error, leave')
        self.assertRefused(
            '[guardrails]\nrecovery_overrides = napping:error\n',
            '[guardrails] recovery_overrides', "'napping' is not a "
            'task_state')
        self.assertRefused(
            '[guardrails]\nqueued_grace_seconds = -5\n',
            '[guardrails] queued_grace_seconds is invalid')

    def test_no_guard_is_valid(self):
        self.use_nova_conf('[guardrails]\nenabled_guards =\n')
        self.start_compute('compute1')
        self.assertEqual(
            [], self.computes['compute1'].manager.driver._guardrails_guards)
