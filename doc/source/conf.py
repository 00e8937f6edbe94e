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
