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
"""Base class of guards.

A guard is a stevedore plugin in the ``nova_guardrails.guards`` namespace: an
entry point naming a subclass of :class:`Guard`. nova-guardrails builds it
once per nova-compute process as ``cls(conf, report)`` and calls its hooks
around the ComputeManager methods it wraps on that one manager instance.

Each ``call_next`` hook receives the next callable of the chain (the next
guard's hook, or nova's own method last) and returns what it returns; a guard
that does not call it replaces nova's behaviour for that call.

Which hooks exist is declared once, here: :data:`MANAGER_HOOKS` and
:data:`DRIVER_HOOKS`. ``GuardrailsDriver`` wires each of them from these
declarations (instance attributes of the one ComputeManager and of the
wrapper driver); adding a plain ``call_next`` hook is one entry here and,
for a manager hook, its method on :class:`Guard`.
"""

#: ``call_next`` hooks around ComputeManager methods: ``{Guard hook name:
#: ComputeManager method name}``. ``GuardrailsDriver.guardrails_bind``
#: replaces each method on the one manager instance by a chain of every
#: guard's hook, in ``[guardrails] enabled_guards`` order, nova's own method
#: last. Each hook is a method of :class:`Guard` taking ``(manager,
#: <the method's parameters>, call_next)``. ``init_host``'s chain is in
#: turn wrapped by the start-up report's begin and finish (see
#: ``guardrails_bind``).
MANAGER_HOOKS = {
    'init_host': 'init_host',
    'destroy_evacuated_instances': '_destroy_evacuated_instances',
    'init_instance': '_init_instance',
    'post_start_hook': 'post_start_hook',
}

#: ``call_next`` hooks around virt driver methods of the same name: the
#: wrapper driver's ``<name>`` runs every guard's ``<name>(manager, *args,
#: call_next, **kwargs)``, the real driver's method last. :class:`Guard`'s
#: default passes the call on.
DRIVER_HOOKS = (
    'finish_revert_migration',
    'finish_migration',
)


def _driver_hook(name):
    """The default hook around the driver's ``name``: passes the call on.

    ``args`` and ``kwargs`` are exactly what the ComputeManager passed to the
    driver method (see nova.virt.driver.ComputeDriver for the signature).
    """
    def hook(self, manager, *args, call_next, **kwargs):
        return call_next(*args, **kwargs)
    hook.__name__ = name
    hook.__qualname__ = 'Guard.%s' % name
    hook.__doc__ = 'Around the driver\'s ``%s``.' % name
    return hook


def _with_driver_hooks(cls):
    """``cls`` with a default hook for each name of DRIVER_HOOKS."""
    for name in DRIVER_HOOKS:
        if name not in vars(cls):
            setattr(cls, name, _driver_hook(name))
    return cls


@_with_driver_hooks
class Guard:
    """A guard for nova-compute; subclass and override the hooks you need.

    :param conf: oslo.config ``ConfigOpts`` (nova's CONF), ``[guardrails]``
        options registered.
    :param report: :class:`~nova_guardrails.report.StartupReport` to record
        every decision in (``report.record(Decision(...))``).
    """

    #: entry point name, set by the loader.
    name = None

    def __init__(self, conf, report):
        self.conf = conf
        self.report = report

    def validate(self):
        """Check this guard's options; raise GuardrailsConfigError naming
        the option when one is invalid. Called once, at driver load.
        """

    def wrap_driver(self, driver, manager):
        """Once, when nova-compute builds its driver: ``driver`` is the real
        driver instance (wrap its methods as instance attributes, never its
        class), ``manager`` the ComputeManager (or None).
        """

    def driver_init_host(self, manager, host):
        """Once per start-up, before nova's node checks and before anything
        can be destroyed: after the real driver's ``init_host(host)`` (nova
        >= 30), or, on nova 29, whose ``init_host`` checks the node identity
        first, just before that check (``_sanity_check_new_host`` or
        ``_ensure_existing_node_identity``, the driver not yet initialised).
        Raise :class:`~nova_guardrails.exception.StartupRefused` to stop.
        """

    def driver_cleanup_host(self, manager, host):
        """nova-compute is stopping (``ComputeManager.cleanup_host``):
        stop whatever the guard started.
        """

    def init_host(self, manager, service_ref, call_next):
        """Around ``ComputeManager.init_host(service_ref)``."""
        return call_next(service_ref)

    def post_start_hook(self, manager, call_next):
        """Around ``ComputeManager.post_start_hook()``: nova-compute's RPC
        server has started (requests reach it from now on).
        """
        return call_next()

    def destroy_evacuated_instances(self, manager, context, node_cache,
                                    call_next):
        """Around ``ComputeManager._destroy_evacuated_instances``; returns
        ``{uuid: instance}`` of the instances it handled.
        """
        return call_next(context, node_cache)

    def init_instance(self, manager, context, instance, call_next):
        """Around ``ComputeManager._init_instance(context, instance)``, once
        per instance of the host at start-up.
        """
        return call_next(context, instance)

    # Around driver methods: one per name of DRIVER_HOOKS, made by
    # _with_driver_hooks unless written here.
