"""Sphinx configuration of the nova-guardrails documentation.

Built with ``make docs`` (warnings fail the build). The recovery table and
the options are rendered from the installed code at build time.
"""

import os

from nova_guardrails import table_doc

project = 'nova-guardrails'
copyright = 'nova-guardrails developers'
extensions = ['oslo_config.sphinxext', 'reno.sphinxext']
exclude_patterns = ['_build']
html_theme = 'alabaster'
html_static_path = []

_generated = os.path.join(os.path.dirname(__file__), '_generated')
os.makedirs(_generated, exist_ok=True)
with open(os.path.join(_generated, 'recovery-table.rst'), 'w') as f:
    f.write(table_doc.rst())
