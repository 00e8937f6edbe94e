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
"""example_guard: a guard another package ships, for nova-guardrails' tests.

Installed by ``tests/third_party_guard`` (entry point ``example`` in the
``nova_guardrails.guards`` namespace). Its options are its own
(``CONFIG_OPTS``): nova-guardrails registers them in ``[guardrails]`` when
``[guardrails] enabled_guards`` names the guard.
"""

from oslo_config import cfg

from nova_guardrails.guards import base


class ExampleGuard(base.Guard):
    """Records the hooks that ran and the option values they read."""

    CONFIG_OPTS = [
        cfg.StrOpt(
            'example_greeting',
            default='hello',
            help='``example`` guard (tests): a word its hooks record, to '
                 'show the value came from nova.conf.'),
        cfg.IntOpt(
            'example_limit',
            min=0,
            default=3,
            help='``example`` guard (tests): a number it reads; a value '
                 'that is not one stops nova-compute at start-up.'),
    ]

    def __init__(self, conf, report):
        super().__init__(conf, report)
        #: (hook, host, greeting) of every hook that ran, in order.
        self.calls = []

    def validate(self):
        self.greeting = self.conf.guardrails.example_greeting
        self.limit = self.conf.guardrails.example_limit

    def driver_init_host(self, manager, host):
        self.calls.append(('driver_init_host', host, self.greeting))

    def init_host(self, manager, service_ref, call_next):
        self.calls.append(('init_host', manager.host, self.greeting))
        return call_next(service_ref)

    def post_start_hook(self, manager, call_next):
        self.calls.append(('post_start_hook', manager.host, self.greeting))
        return call_next()


class ClashingGuard(base.Guard):
    """Declares an option of nova-guardrails' own name, differently."""

    CONFIG_OPTS = [
        cfg.StrOpt(
            'report_path',
            default='/var/tmp/example-report.json',
            help='``example_clash`` guard (tests): the name of '
                 'nova-guardrails\' own option, another option.'),
    ]
