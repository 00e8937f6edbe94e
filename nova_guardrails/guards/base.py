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
"""


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

    # Around driver methods ------------------------------------------------
    # ``args``/``kwargs`` are exactly what the ComputeManager passed to the
    # driver method (see nova.virt.driver.ComputeDriver for the signature).

    def finish_revert_migration(self, manager, *args, call_next, **kwargs):
        """Around the driver's ``finish_revert_migration``."""
        return call_next(*args, **kwargs)

    def finish_migration(self, manager, *args, call_next, **kwargs):
        """Around the driver's ``finish_migration``."""
        return call_next(*args, **kwargs)
