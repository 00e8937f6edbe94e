"""nova-guardrails: start-up and data-safety guards for nova-compute."""
