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
"""Guards: stevedore plugins in the ``nova_guardrails.guards`` namespace.

A guard's own options are its class's ``CONFIG_OPTS``, registered in
``[guardrails]`` when the guard is loaded (:func:`register_opts`,
:func:`load`); :func:`installed_opts` lists them for oslo-config-generator
without building any guard.
"""

from oslo_config import cfg
from oslo_log import log as logging
import stevedore

from nova_guardrails import conf as guardrails_conf
from nova_guardrails import exception
from nova_guardrails.guards.base import Guard

LOG = logging.getLogger(__name__)

NAMESPACE = 'nova_guardrails.guards'


def available():
    """Entry point names of every installed guard, sorted."""
    return sorted(stevedore.ExtensionManager(NAMESPACE).names())


def _named_plugins(names):
    """``[(name, entry point value, plugin)]`` of the guards ``names``, in
    that order, imported but not built.

    :raises GuardrailsConfigError: a name is unknown or repeated, or a
        plugin fails to import.
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
        NAMESPACE, names, name_order=True, invoke_on_load=False,
        on_missing_entrypoints_callback=on_missing,
        on_load_failure_callback=on_load_failure)
    return [(e.name, e.entry_point.value, e.plugin)
            for e in manager.extensions]


def _installed_plugins():
    """``[(name, entry point value, plugin)]`` of every installed guard that
    imports, the shipped guards first in ``[guardrails] enabled_guards``'s
    default order, then the others by name; one that fails to import is
    left out with a warning.
    """
    def on_load_failure(manager, entrypoint, error):
        LOG.warning('nova-guardrails: guard %(name)r (%(value)s) failed to '
                    'load, its options are left out: %(error)s',
                    {'name': entrypoint.name, 'value': entrypoint.value,
                     'error': error})

    manager = stevedore.ExtensionManager(
        NAMESPACE, invoke_on_load=False,
        on_load_failure_callback=on_load_failure)
    order = guardrails_conf.DEFAULT_GUARDS
    plugins = sorted(
        ((e.name, e.entry_point.value, e.plugin) for e in manager.extensions),
        key=lambda p: (order.index(p[0]) if p[0] in order else len(order),
                       p[0]))
    return plugins


def _config_opts(name, value, plugin):
    """The guard's ``CONFIG_OPTS``, checked to be oslo.config options."""
    opts = list(getattr(plugin, 'CONFIG_OPTS', None) or ())
    for opt in opts:
        if not isinstance(opt, cfg.Opt):
            raise exception.GuardrailsConfigError(reason=(
                '[guardrails] enabled_guards: guard %r (%s) has %r in '
                'CONFIG_OPTS, not an oslo.config option' % (
                    name, value, opt)))
    return opts


def _register_guard_opts(conf, name, value, plugin):
    """Register the guard's ``CONFIG_OPTS`` in ``[guardrails]`` of ``conf``
    (again: nothing happens); returns them.

    :raises GuardrailsConfigError: an option clashes with a different one
        of the same name already registered there (nova-guardrails' own, or
        another guard's).
    """
    opts = _config_opts(name, value, plugin)
    for opt in opts:
        try:
            conf.register_opt(opt, group=guardrails_conf.GROUP)
        except cfg.DuplicateOptError as error:
            raise exception.GuardrailsConfigError(reason=(
                '[guardrails] %s: guard %r (%s) declares an option of this '
                'name that differs from the one already registered '
                '(nova-guardrails\' own or another guard\'s); the guard must '
                'rename its option' % (opt.dest, name, value))) from error
    return opts


def register_opts(conf, names=None):
    """Register the ``[guardrails]`` options on ``conf``: nova-guardrails'
    own and the ``CONFIG_OPTS`` of the guards ``names`` (idempotent).

    For the commands that read options outside nova-compute (which loads
    its guards' options with them, :func:`load`).

    :param names: entry point names; None: every installed guard (one that
        fails to import, or whose options clash, is left out with a
        warning).
    :returns: ``[(guard name, [opts])]``, in ``names`` order.
    :raises GuardrailsConfigError: a name is unknown or repeated, a named
        guard fails to import, or an option of a named guard clashes (see
        :func:`_register_guard_opts`).
    """
    guardrails_conf.register_opts(conf)
    if names is not None:
        return [(name, _register_guard_opts(conf, name, value, plugin))
                for name, value, plugin in _named_plugins(names)]
    out = []
    for name, value, plugin in _installed_plugins():
        try:
            out.append((name, _register_guard_opts(conf, name, value,
                                                   plugin)))
        except exception.GuardrailsConfigError as error:
            LOG.warning('nova-guardrails: %s; left out', error)
    return out


def installed_opts():
    """``[(guard name, [opts])]`` of every installed guard, as
    :func:`register_opts` with no names orders them, nothing registered
    (``conf.list_opts``, for oslo-config-generator).
    """
    out = []
    for name, value, plugin in _installed_plugins():
        try:
            out.append((name, _config_opts(name, value, plugin)))
        except exception.GuardrailsConfigError as error:
            LOG.warning('nova-guardrails: %s; its options are left out',
                        error)
    return out


def load(names, conf, report):
    """Load and build the guards ``names``, in that order.

    Each guard's ``CONFIG_OPTS`` are registered in ``[guardrails]`` first,
    then every guard is built as ``cls(conf, report)``, then each one's
    ``validate()`` runs.

    :param names: entry point names (``[guardrails] enabled_guards``).
    :param conf: the oslo.config ``ConfigOpts`` (nova's CONF).
    :param report: the :class:`~nova_guardrails.report.StartupReport`.
    :returns: list of :class:`~nova_guardrails.guards.base.Guard`.
    :raises GuardrailsConfigError: a name is unknown or repeated, a plugin
        fails to import or build, is not a Guard, declares an option that
        clashes with a registered one (the message names ``[guardrails]
        <option>`` and the guard) or rejects its options (its
        ``validate``). The other messages name ``[guardrails]
        enabled_guards``.
    """
    plugins = _named_plugins(names)
    for name, value, plugin in plugins:
        _register_guard_opts(conf, name, value, plugin)
    built = []
    for name, value, plugin in plugins:
        try:
            built.append((name, value, plugin(conf, report)))
        except Exception as error:
            raise exception.GuardrailsConfigError(reason=(
                '[guardrails] enabled_guards: guard %r (%s) failed to load: '
                '%s' % (name, value, error))) from error
    guards = []
    for name, value, guard in built:
        if not isinstance(guard, Guard):
            raise exception.GuardrailsConfigError(reason=(
                '[guardrails] enabled_guards: %r (%s) is not a '
                'nova_guardrails.guards.base.Guard' % (name, value)))
        guard.name = name
        guard.validate()
        guards.append(guard)
    return guards
