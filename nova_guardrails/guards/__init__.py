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
"""Guards: stevedore plugins in the ``nova_guardrails.guards`` namespace."""

import stevedore

from nova_guardrails import exception
from nova_guardrails.guards.base import Guard

NAMESPACE = 'nova_guardrails.guards'


def available():
    """Entry point names of every installed guard, sorted."""
    return sorted(stevedore.ExtensionManager(NAMESPACE).names())


def load(names, conf, report):
    """Load and build the guards ``names``, in that order.

    :param names: entry point names (``[guardrails] enabled_guards``).
    :param conf: the oslo.config ``ConfigOpts`` (nova's CONF).
    :param report: the :class:`~nova_guardrails.report.StartupReport`.
    :returns: list of :class:`~nova_guardrails.guards.base.Guard`.
    :raises GuardrailsConfigError: a name is unknown or repeated, a plugin
        fails to import or build, is not a Guard, or rejects its options
        (its ``validate``). The message names ``[guardrails] enabled_guards``.
    """
    names = list(names)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise exception.GuardrailsConfigError(reason=(
            '[guardrails] enabled_guards names %s more than once'
            % ', '.join(repeated)))
    if not names:
        return []

    def on_missing(missing):
        raise exception.GuardrailsConfigError(reason=(
            '[guardrails] enabled_guards: unknown guard(s) %s; installed '
            'guards (entry points in %s): %s' % (
                ', '.join(sorted(missing)), NAMESPACE,
                ', '.join(available()) or 'none')))

    def on_load_failure(manager, entrypoint, error):
        raise exception.GuardrailsConfigError(reason=(
            '[guardrails] enabled_guards: guard %r (%s) failed to load: %s'
            % (entrypoint.name, entrypoint.value, error))) from error

    manager = stevedore.NamedExtensionManager(
        NAMESPACE, names, name_order=True, invoke_on_load=True,
        invoke_args=(conf, report),
        on_missing_entrypoints_callback=on_missing,
        on_load_failure_callback=on_load_failure)
    guards = []
    for extension in manager.extensions:
        guard = extension.obj
        if not isinstance(guard, Guard):
            raise exception.GuardrailsConfigError(reason=(
                '[guardrails] enabled_guards: %r (%s) is not a '
                'nova_guardrails.guards.base.Guard' % (
                    extension.name, extension.entry_point.value)))
        guard.name = extension.name
        guard.validate()
        guards.append(guard)
    return guards
