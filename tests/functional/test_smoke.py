from nova_guardrails.lab import harness


class SmokeTest(harness.GuardrailsTestBase):

    def test_boot_soft_reboot_crash(self):
        self.start_compute('compute1')
        server = self._create_server(networks='none')
        crashed = self.crash_at('nova.tests.fixtures.libvirt.Domain',
                                'shutdown')
        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'SOFT'}})
        self.wait_for_crash(crashed)
        print('after crash', self.server_states(server),
              self.guest_power_state('compute1', server))
        self.restart_compute_service('compute1')
        print('after restart', self.server_states(server),
              self.guest_power_state('compute1', server))
        print(type(self.computes['compute1'].manager.driver))
