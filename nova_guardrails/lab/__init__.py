"""The nova-guardrails lab: seed scenarios on an embedded, in-process nova.

Needs nova's functional test fixtures and their dependencies
(``pip install nova-guardrails[lab]``).
"""
