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
"""The nova-guardrails lab: upstream bugs' scenarios on an embedded nova.

Needs nova's functional test fixtures and their dependencies
(``pip install nova-guardrails[lab]``).

* :mod:`~nova_guardrails.lab.harness`: the in-process nova (nova's
  functional fixtures, nova.conf from text, crashes, restarts keeping the
  hypervisor), shared with the functional tests;
* :mod:`~nova_guardrails.lab.scenarios`: the upstream bugs' scenarios, one
  module per guard, and their registry;
* :mod:`~nova_guardrails.lab.runner`: ``nova-guardrails lab``, every
  scenario nova alone then guarded, and its table;
* :mod:`~nova_guardrails.lab.crash_matrix`: ``nova-guardrails
  crash-matrix``, every operation crashed at every crash point;
* :mod:`~nova_guardrails.lab.ceph`: a throwaway Ceph cluster for the rbd
  scenarios.
"""
