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
"""Exceptions of nova-guardrails."""

from nova import exception as nova_exception


class GuardrailsConfigError(nova_exception.InvalidConfiguration):
    """nova.conf asks for something nova-guardrails cannot do.

    Raised while nova-compute builds its virt driver, so the service stops
    before it touches any instance. The message names the option, as
    ``[guardrails] enabled_guards``. Deliberately not an ImportError or
    ValueError: ``nova.virt.driver.load_compute_driver`` swallows those into
    a generic "Unable to load the virtualization driver".
    """

    msg_fmt = '%(reason)s'


class StartupRefused(nova_exception.NovaException):
    """A guard refuses to let nova-compute finish starting (fail closed)."""

    msg_fmt = '%(reason)s'
