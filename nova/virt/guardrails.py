# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""Shim for nova's driver loader; nova-guardrails lives in nova_guardrails.

nova >= 22 has no hooks; ``nova.virt.driver.load_compute_driver`` imports
``nova.virt.<[DEFAULT] compute_driver>``. With
``compute_driver = guardrails.GuardrailsDriver`` it lands here. Nothing else
of nova-guardrails is placed in nova's namespace.
"""

from nova_guardrails.driver import GuardrailsDriver

__all__ = ['GuardrailsDriver']
