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
