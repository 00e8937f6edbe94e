"""The nova-guardrails lab: upstream bugs' scenarios on an embedded nova.

Needs nova's functional test fixtures and their dependencies
(``pip install nova-guardrails[lab]``).
"""
