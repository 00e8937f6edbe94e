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
"""A third-party guard, loaded from nova.conf as nova-compute loads it.

``example_guard`` (tests/third_party_guard) is a distribution of its own
with an entry point in the ``nova_guardrails.guards`` namespace and an
option of its own in its class's ``CONFIG_OPTS``; nova.conf names it in
``[guardrails] enabled_guards`` beside the shipped guards.
"""

import json

import nova.conf
from nova_guardrails import conf as guardrails_conf
from nova_guardrails import exception
from nova_guardrails.lab import harness

import third_party_guard

CONF = nova.conf.CONF

ENABLED = ('enabled_guards = recovery_table, host_identity, revert_vif, '
           'rbd_root_disk, example\n')


class ThirdPartyGuardTest(harness.GuardrailsTestBase):

    def setUp(self):
        super().setUp()
        self.useFixture(third_party_guard.ThirdPartyGuard())

    def test_hooks_run_with_its_option_from_nova_conf(self):
        self.use_nova_conf('[guardrails]\n' + ENABLED +
                           'example_greeting = bonjour\n')
        self.start_compute('compute1')
        driver = self.computes['compute1'].manager.driver
        self.assertEqual(['recovery_table', 'host_identity', 'revert_vif',
                          'rbd_root_disk', 'example'],
                         [g.name for g in driver._guardrails_guards])
        guard = driver._guardrails_guards[-1]
        self.assertEqual('ExampleGuard', type(guard).__name__)
        self.assertEqual('bonjour', CONF.guardrails.example_greeting)
        self.assertEqual(3, CONF.guardrails.example_limit)
        # Its hooks ran in nova-compute's start-up, its init_host around
        # nova's (which calls the driver's), and read nova.conf's value.
        self.assertEqual([('init_host', 'compute1', 'bonjour'),
                          ('driver_init_host', 'compute1', 'bonjour'),
                          ('post_start_hook', 'compute1', 'bonjour')],
                         guard.calls)
        with open(CONF.guardrails.report_path) as f:
            self.assertEqual('completed', json.load(f)['status'])
        # oslo-config-generator lists its options with the others.
        [(_group, opts)] = guardrails_conf.list_opts()
        self.assertIn('example_greeting', [o.dest for o in opts])

    def test_bad_value_of_its_option_stops_nova_compute(self):
        self.use_nova_conf('[guardrails]\n' + ENABLED +
                           'example_limit = many\n')
        error = self.assertRaises(exception.GuardrailsConfigError,
                                  self.start_compute, 'compute1')
        self.assertIn('[guardrails] example_limit is invalid', str(error))
        self.assertEqual(
            [], self.admin_api.get_services(binary='nova-compute'))

    def test_option_clashing_with_nova_guardrails_own(self):
        self.use_nova_conf('[guardrails]\nenabled_guards = recovery_table, '
                           'example_clash\n')
        error = self.assertRaises(exception.GuardrailsConfigError,
                                  self.start_compute, 'compute1')
        self.assertIn('[guardrails] report_path: guard \'example_clash\'',
                      str(error))
        self.assertEqual(
            [], self.admin_api.get_services(binary='nova-compute'))
