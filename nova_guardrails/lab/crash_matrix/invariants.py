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
"""The crash matrix's invariants: what a settled cell is judged on.

:func:`snapshot_state` reads, after the restart and the settling, what the
invariants look at: the instance from the cell database (deleted rows
included), the server's guest on every hypervisor of the test, and
placement's allocations of the instance and of its migrations.
:func:`evaluate` turns that state into a verdict:

* :data:`LOST`: the guest or the instance is gone when the operation does
  not remove it (nova bug 1419785's evacuation destroy, a resize recorded
  on a host without a guest), or a guest runs on two hosts;
* :data:`STUCK`: a task_state left, a vm_state that contradicts the guest
  (:data:`nova_guardrails.lab.scenarios.GUEST_OF_VM_STATE`), nova-compute
  not started, or placement allocations where the instance is not;
* :data:`ERROR`: nova's own failure path, a stable state (vm_state error,
  task_state None) an operator's hard reboot, rebuild or evacuation starts
  from;
* :data:`RECOVERED`: none of these.
"""

from nova_guardrails.lab.crash_matrix import tracer

#: Verdicts.
RECOVERED, ERROR, STUCK, LOST = 'recovered', 'error', 'stuck', 'lost'
VERDICTS = (RECOVERED, ERROR, STUCK, LOST)
#: A cell whose crash point was not reached in its run: it proves nothing
#: and is counted under no verdict.
NOT_REACHED = 'not reached'


#: vm_states whose instance has a guest defined on its host.
NEEDS_GUEST = ('active', 'stopped', 'paused', 'suspended', 'rescued',
               'resized', 'shelved')


def _guests(test, server_id):
    """``{host: power state name}`` of the server's guest on every
    hypervisor of the test (stopped services included).
    """
    out = {}
    for host, conn in test.matrix_connections.items():
        try:
            conn.lookupByUUIDString(server_id)
        except tracer.fakelibvirt().libvirtError:
            continue
        out[host] = test.guest_power_state_on(conn, {'id': server_id})
    return out


def snapshot_state(test, server_id):
    """What the invariants look at, read from the cell database, placement
    and the hypervisors.

    :param test: the GuardrailsTestBase of the cell, with
        ``matrix_connections`` (``{host: fakelibvirt connection}``).
    :param server_id: the server's uuid.
    :returns: ``{'exists': bool, 'vm_state': str|None, 'task_state':
        str|None, 'host': str|None, 'guests': {host: power state name},
        'allocations': [host or provider uuid], 'migration_allocations':
        {migration uuid: {'status': str, 'hosts': [host]}}}``.
    """
    from nova import context as nova_context
    from nova import objects
    ctxt = nova_context.get_admin_context()
    try:
        instance = objects.Instance.get_by_uuid(
            ctxt.elevated(read_deleted='yes'), server_id)
    except Exception:
        instance = None
    allocations = test._get_allocations_by_server_uuid(server_id)
    providers = {test._get_provider_uuid_by_host(h): h
                 for h in test.matrix_connections
                 if h in test.computes}
    migrations = objects.MigrationList.get_by_filters(
        ctxt, {'instance_uuid': server_id})
    migration_allocations = {}
    for migration in migrations:
        held = test._get_allocations_by_server_uuid(migration.uuid)
        if held:
            migration_allocations[migration.uuid] = {
                'status': migration.status,
                'hosts': sorted(providers.get(rp, rp) for rp in held)}
    return {
        'exists': instance is not None and not instance.deleted,
        'vm_state': instance.vm_state if instance else None,
        'task_state': instance.task_state if instance else None,
        'host': instance.host if instance else None,
        'guests': _guests(test, server_id),
        'allocations': sorted(providers.get(rp, rp) for rp in allocations),
        'migration_allocations': migration_allocations,
    }


def evaluate(state, operation, compute_started):
    """``(verdict, failed invariants)`` for a settled state.

    :param state: a :func:`snapshot_state` dict.
    :param operation: the
        :class:`~nova_guardrails.lab.crash_matrix.operations.Operation`
        (its ``deletes``).
    :param compute_started: whether the crashed nova-compute started again.
    :returns: ``(verdict, [str])``: one of :data:`VERDICTS`, and the
        failed invariants in words (empty for recovered and error).

    Invariants: nova-compute started; task_state None; the guest on the
    instance's host consistent with vm_state; the guest present unless the
    operation deletes or offloads it; no guest running on two hosts;
    placement allocations only on the instance's host (none when offloaded
    or deleted; for an instance in error with no host, a build interrupted
    before its claim recorded the host, nova keeps the building node's
    allocation until the server is deleted) and no migration holding
    allocations once no migration is in progress.
    """
    from nova_guardrails.lab import scenarios
    lost, stuck = [], []
    guests = state['guests']
    running = sorted(h for h, p in guests.items() if p == 'running')
    if len(running) > 1:
        lost.append('guest running on %s' % ', '.join(running))
    if not compute_started:
        stuck.append('nova-compute did not start')
    if not state['exists']:
        if not operation.deletes:
            lost.append('instance deleted')
        if state['allocations']:
            stuck.append('deleted instance holds allocations on %s' %
                         state['allocations'])
        return _verdict(lost, stuck, None)
    vm_state, host = state['vm_state'], state['host']
    if state['task_state'] is not None:
        stuck.append('task_state %s' % state['task_state'])
    guest = guests.get(host)
    if vm_state in NEEDS_GUEST and guest is None:
        (stuck if vm_state == 'shelved' else lost).append(
            'no guest on %s for vm_state %s' % (host, vm_state))
    elif vm_state in scenarios.GUEST_OF_VM_STATE and vm_state != 'error':
        expected = scenarios.GUEST_OF_VM_STATE[vm_state]
        if (guest or 'pending') not in expected:
            stuck.append('vm_state %s but the guest is %s' % (
                vm_state, guest or 'absent'))
    expected_allocations = [] if (vm_state == 'shelved_offloaded' or
                                  host is None) else [host]
    if vm_state == 'error' and host is None and \
            len(state['allocations']) <= 1:
        # A build interrupted before the claim recorded its host: nova sets
        # it to error (_error_out_instances_whose_build_was_interrupted) and
        # keeps the node's allocation until the server is deleted.
        expected_allocations = state['allocations']
    if vm_state != 'resized' and state['allocations'] != \
            expected_allocations:
        stuck.append('allocations on %s, instance on %s' % (
            state['allocations'] or 'no provider', host))
    if vm_state != 'resized' and state['migration_allocations']:
        stuck.append('migration(s) still hold allocations: %s' %
                     state['migration_allocations'])
    return _verdict(lost, stuck, vm_state)


def _verdict(lost, stuck, vm_state):
    if lost:
        return LOST, lost + stuck
    if stuck:
        return STUCK, stuck
    if vm_state == 'error':
        return ERROR, []
    return RECOVERED, []
