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
"""Options of the ``[guardrails]`` group of nova.conf.

Here: the options of the wrapper itself. A guard's own options are its class's
``CONFIG_OPTS`` (:class:`nova_guardrails.guards.base.Guard`), registered in
the same group when the guard is loaded. The driver wrapper registers them
on nova's global ``CONF``; :func:`list_opts`, the ``oslo.config.opts`` entry
point, lists them all for ``oslo-config-generator --namespace
nova_guardrails``.
"""

from oslo_config import cfg
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

GROUP = 'guardrails'


def _group():
    return cfg.OptGroup(
        GROUP,
        title='nova-guardrails options',
        help='Options of nova-guardrails, a wrapper around the virt driver '
             'of nova-compute. Enable it with ``[DEFAULT] compute_driver = '
             'guardrails.GuardrailsDriver`` and name the real driver in '
             '``[guardrails] driver``.')


#: The group, for oslo-config-generator (:func:`list_opts`).
guardrails_group = _group()

#: The shipped guards, the default of ``enabled_guards``.
DEFAULT_GUARDS = ('recovery_table', 'host_identity', 'revert_vif',
                  'rbd_root_disk')

guardrails_opts = [
    cfg.StrOpt(
        'driver',
        help='The real virt driver that nova-guardrails wraps, named as '
             '``[DEFAULT] compute_driver`` would name it without '
             'nova-guardrails, for example ``libvirt.LibvirtDriver``. '
             'Required when ``[DEFAULT] compute_driver`` is '
             '``guardrails.GuardrailsDriver``: nova-compute refuses to start '
             'without it.\n\n'
             'The ironic driver is refused: nova keys its ironic handling on '
             'the value of ``[DEFAULT] compute_driver``, which the wrapper '
             'would hide.'),
    cfg.ListOpt(
        'enabled_guards',
        default=list(DEFAULT_GUARDS),
        help='Guards to load, by entry point name in the '
             '``nova_guardrails.guards`` namespace, run in the order given. '
             'An unknown or repeated name stops nova-compute at start-up. An '
             'empty value wraps the real driver with no guard at all.\n\n'
             'Guards shipped with nova-guardrails:\n\n'
             '* ``recovery_table``: at start-up, drives every instance of '
             'the host caught in a transitional task_state to a stable state '
             'by an explicit table (``nova-guardrails table`` prints it).\n'
             '* ``host_identity``: refuses to start when this hypervisor is '
             'registered to another nova-compute host or holds guests '
             '(running or not) of another host (nova bug 1419785), and '
             'destroys guests evacuated away only on complete evidence.\n'
             '* ``revert_vif``: before a resize revert (or resize) waits for '
             'network-vif-plugged events, moves ports still bound to another '
             'host to this one, so the driver never waits for an event that '
             'cannot come (nova bug 1450624).\n'
             '* ``rbd_root_disk``: an instance\'s images in Ceph '
             '(``<uuid>_disk*``) are removed only by that instance\'s own '
             'host, never by a failed evacuation or rebuild spawn.'),
    cfg.StrOpt(
        'report_path',
        default='$state_path/guardrails/startup-report.json',
        help='Where nova-compute writes the start-up report: a JSON '
             'document with one row per guard decision (instance uuid, '
             'state before, action, state after), replaced at every '
             'start-up. The directory is created when missing.'),
]


def register_opts(conf):
    """Register nova-guardrails' own ``[guardrails]`` options on ``conf``
    (idempotent). A guard's options: ``guards.register_opts``.
    """
    # A group of its own for each ConfigOpts: oslo.config registers a
    # shallow copy of the OptGroup given, which shares the options' dict
    # with every other ConfigOpts given the same OptGroup (a guard's option
    # registered on one would be registered on all).
    conf.register_group(_group())
    conf.register_opts(guardrails_opts, group=GROUP)


def list_opts():
    """Options for oslo-config-generator: ``[(group, [opts])]``.

    nova-guardrails' own options, then the ``CONFIG_OPTS`` of every
    installed guard (stevedore, no guard built), the shipped ones in
    ``enabled_guards``'s default order first. A guard that fails to import,
    or an option that clashes with one listed before it, is left out with
    a warning.
    """
    from nova_guardrails import guards

    opts = list(guardrails_opts)
    listed = {opt.dest: opt for opt in opts}
    for name, guard_opts in guards.installed_opts():
        for opt in guard_opts:
            if opt.dest not in listed:
                listed[opt.dest] = opt
                opts.append(opt)
            elif listed[opt.dest] != opt:
                LOG.warning('nova-guardrails: [%(group)s] %(opt)s of guard '
                            '%(guard)r clashes with an option of that name '
                            'listed before; left out',
                            {'group': GROUP, 'opt': opt.dest,
                             'guard': name})
    return [(guardrails_group, opts)]
