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

Registered on nova's global ``CONF`` by the driver wrapper and listed for
``oslo-config-generator --namespace nova_guardrails`` through the
``oslo.config.opts`` entry point :func:`list_opts`.
"""

from oslo_config import cfg

GROUP = 'guardrails'

guardrails_group = cfg.OptGroup(
    GROUP,
    title='nova-guardrails options',
    help='Options of nova-guardrails, a wrapper around the virt driver of '
         'nova-compute. Enable it with ``[DEFAULT] compute_driver = '
         'guardrails.GuardrailsDriver`` and name the real driver in '
         '``[guardrails] driver``.')

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
        default=['recovery_table', 'host_identity', 'revert_vif',
                 'rbd_root_disk'],
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
    cfg.DictOpt(
        'recovery_overrides',
        default={},
        help='``recovery_table`` guard: per task_state, the action to take '
             'at start-up instead of the table\'s, as '
             '``task_state:action`` pairs separated by commas, for example '
             '``resize_reverting:error, shelving:leave``. The action applies '
             'in every vm_state (but soft-deleted, deleted and building, '
             'which nova settles first) and for every power state. Actions: '
             '``clear`` (task_state None), ``clear_to_guest`` (task_state '
             'None, vm_state from the guest\'s power state), ``error`` '
             '(vm_state error, task_state None), ``leave`` (nothing, for an '
             'operator to settle). An unknown task_state or action stops '
             'nova-compute at start-up. ``nova-guardrails table '
             '--config-file nova.conf`` prints the effective table.'),
    cfg.IntOpt(
        'queued_grace_seconds',
        min=0,
        default=120,
        help='``recovery_table`` guard: seconds after start-up before an '
             'instance whose request is still queued for this host is '
             'decided by the table. A task_state nova-api sets (rebooting, '
             'suspending, ...) with no ``compute_*`` event on the '
             'instance\'s latest instance action means the request never '
             'reached a compute: it is left alone so that it runs once, and '
             'looked at again after this many seconds; if its task_state '
             'did not move by then, the table applies. 0: no wait, every '
             'instance is decided at start-up as an interrupted one.'),
    cfg.ListOpt(
        'allow_takeover_from',
        default=[],
        deprecated_for_removal=True,
        deprecated_reason='no start-up can make a takeover consistent: '
                          'nova has no API that moves a compute node or an '
                          'instance to another host',
        help='``host_identity`` guard: no longer lets a start proceed. '
             'When this hypervisor\'s compute node, or a guest on it, is '
             'recorded for one of these hosts, the refusal says why a '
             'takeover cannot be made consistent and gives the supported '
             'steps (an HA pair shares one [DEFAULT] host and node '
             'identity; to move a hypervisor, move its servers off, delete '
             'the old service, then start).'),
    cfg.IntOpt(
        'max_startup_destroys',
        min=0,
        default=None,
        help='``host_identity`` guard: the most guests nova-compute may '
             'destroy at start-up as evacuated to another host. When more '
             'would be destroyed, nova-compute refuses to start, lists them '
             'and destroys none. Unset: no limit.'),
    cfg.StrOpt(
        'revert_vif_policy',
        default='fix',
        choices=[
            ('fix', 'move the binding of a port bound to another host to '
                    'this host; when neutron refuses the update, fail the '
                    'revert at once with a fault naming the port, instead '
                    'of waiting [DEFAULT] vif_plugging_timeout; a port '
                    'still bound elsewhere after an acknowledged update '
                    '(the update lost) is never waited for'),
            ('skip-wait', 'move the binding as ``fix`` does; when that '
                          'fails, do not wait for that port\'s event and '
                          'go on'),
            ('off', 'the revert_vif guard does nothing'),
        ],
        help='``revert_vif`` guard: what to do before the driver of a '
             'resize revert (or resize) waits for network-vif-plugged '
             'events of ports that neutron has bound to another host. '
             'Every decision is logged with the instance, the port, the '
             'binding host found and the action.'),
    cfg.IntOpt(
        'rbd_trash_delay',
        min=0,
        default=0,
        help='``rbd_root_disk`` guard: seconds an instance\'s root disk '
             'stays in the pool\'s rbd trash when the instance is deleted. '
             '0: removed at once, as nova does. Positive: moved to the rbd '
             'trash with that deferment; ``nova-guardrails rbd-trash list`` '
             'and ``restore`` find and restore it until it is purged.'),
]


def register_opts(conf):
    """Register the ``[guardrails]`` options on ``conf`` (idempotent)."""
    conf.register_group(guardrails_group)
    conf.register_opts(guardrails_opts, group=guardrails_group)


def list_opts():
    """Options for oslo-config-generator: ``[(group, [opts])]``."""
    return [(guardrails_group, guardrails_opts)]
