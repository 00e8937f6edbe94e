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
"""The nova internals nova-guardrails relies on, checked on the installed
nova: what to re-check when upgrading nova.

nova has no plugin API for what the guards do, so they call private
ComputeManager and driver methods, wrap some of them, read attributes nova
sets in constructors, and mirror the logic of a few nova methods. Every
such internal is listed here with where it is used; each test fails naming
the internal, the installed nova and the guard to re-check:

* CALLS: the function exists and still accepts the call as the guards make
  it (the positional parameters by the same names, in the same order; the
  keywords; no new required parameter);
* WRAPPED: ComputeManager methods the driver wrapper replaces on the
  manager instance, whose hooks mirror nova's parameters exactly;
* ATTRIBUTES: attributes nova assigns in constructors (``self.x = ...``);
* CONSTANTS: task_states, vm_states, power states, fields, exceptions;
* EVENTS: ComputeManager methods whose ``compute_<method>`` instance action
  event the recovery reads (``wrap_instance_event(prefix='compute')``);
* QUEUEABLE: the RPC methods the recovery's request ledger gates;
* BODIES: nova methods whose logic a guard mirrors or whose order it relies
  on, by a hash of their code (docstring and comments excluded): a body
  not seen on a tested release fails until someone re-checks the guard
  against it and adds the hash.

Signatures are read from nova's source (ast), not ``inspect.signature``:
nova's decorators do not all keep a function's signature. Existence is
checked on the imported objects. Run as a script it prints one line per
internal (``python tests/unit/test_nova_internals.py``).
"""

import ast
import collections
import hashlib
import importlib
import inspect
import unittest

from nova import version as nova_version

from nova_guardrails import queued

NOVA = nova_version.version_string()

Call = collections.namedtuple('Call', 'target positional keywords used_in')


def call(target, positional=(), keywords=(), used_in=''):
    return Call(target, tuple(positional), tuple(keywords), used_in)


CM = 'nova.compute.manager.ComputeManager'
DRV = 'nova.virt.driver.ComputeDriver'
LV = 'nova.virt.libvirt.driver.LibvirtDriver'
RBD = 'nova.storage.rbd_utils'
OBJ = 'nova.objects'

#: Functions and methods the guards call: (target, positional parameter
#: names as passed, keywords as passed, where).
CALLS = [
    # ComputeManager: private and RPC methods called directly.
    call(CM + '._get_power_state', ['instance'],
         used_in='host_identity, recovery_table'),
    call(CM + '._get_instances_on_driver', ['context'],
         used_in='host_identity.destroy_evacuated_instances'),
    call(CM + '._get_instance_block_device_info', ['context', 'instance'],
         used_in='host_identity._destroy_as_nova, '
                 'recovery_table.actions._revert_resize'),
    call(CM + '._is_instance_storage_shared', ['context', 'instance'],
         ['host'], used_in='host_identity._destroy_as_nova'),
    call(CM + '.reboot_instance', ['context', 'instance'],
         ['block_device_info', 'reboot_type'],
         used_in='recovery_table reboot_soft/reboot_hard'),
    call(CM + '._delete_instance', ['context', 'instance', 'bdms'],
         used_in='recovery_table rerun_delete'),
    call(CM + '.restore_instance', ['context', 'instance'],
         used_in='recovery_table rerun_restore'),
    call(CM + '.soft_delete_instance', ['context', 'instance'],
         used_in='recovery_table rerun_soft_delete'),
    call(CM + '.shelve_offload_instance', ['context', 'instance'],
         ['clean_shutdown', 'accel_uuids'],
         used_in='recovery_table rerun_shelve_offload'),
    call(CM + '._complete_volume_attachments', ['context', 'bdms'],
         used_in='recovery_table finish_forward'),
    call(CM + '._revert_allocation', ['context', 'instance', 'migration'],
         used_in='recovery_table revert_resize'),
    call(CM + '._delete_allocation_after_move',
         ['context', 'instance', 'migration'],
         used_in='recovery_table.sweeps.UnfinishedLiveMigrations'),
    # What ComputeManager holds.
    call('nova.compute.rpcapi.ComputeAPI.revert_resize',
         ['ctxt', 'instance', 'migration', 'host', 'request_spec'],
         used_in='recovery_table rollback_resize'),
    call('nova.compute.rpcapi.ComputeAPI.finish_revert_resize',
         ['ctxt', 'instance', 'migration', 'host', 'request_spec'],
         used_in='recovery_table rollback_resize'),
    call('nova.scheduler.client.report.SchedulerReportClient.'
         'remove_provider_tree_from_instance_allocation',
         ['context', 'consumer_uuid', 'root_rp_uuid'],
         used_in='host_identity._finish_as_nova, recovery_table'),
    call('nova.scheduler.client.report.SchedulerReportClient.'
         'get_allocations_for_consumer', ['context', 'consumer'],
         used_in='recovery_table.sweeps.UnfinishedLiveMigrations'),
    call('nova.network.neutron.API.get_instance_nw_info',
         ['context', 'instance'], used_in='host_identity._destroy_as_nova'),
    # Driver methods.
    call(DRV + '.init_host', ['host'], used_in='GuardrailsDriver.init_host'),
    call(DRV + '.cleanup_host', ['host'],
         used_in='GuardrailsDriver.cleanup_host'),
    call(DRV + '.finish_revert_migration',
         ['context', 'instance', 'network_info', 'migration',
          'block_device_info', 'power_on'],
         used_in='revert_vif (arguments bound by name), recovery_table '
                 'revert_resize'),
    call(DRV + '.finish_migration',
         ['context', 'migration', 'instance', 'disk_info', 'network_info',
          'image_meta', 'resize_instance', 'allocations'],
         used_in='revert_vif (arguments bound by name)'),
    call(DRV + '.get_available_nodes', keywords=['refresh'],
         used_in='host_identity._check_nodes'),
    call(DRV + '.list_instance_uuids', used_in='host_identity'),
    call(DRV + '.destroy', ['context', 'instance', 'network_info',
                            'block_device_info', 'destroy_disks'],
         used_in='host_identity._destroy_as_nova, '
                 'recovery_table._fail_evacuation'),
    call(DRV + '.power_off', ['instance'],
         used_in='host_identity._power_off_and_keep'),
    call('nova.virt.driver.load_compute_driver', ['virtapi'],
         used_in='nova loads nova.virt.guardrails (test_driver_loading)'),
    call(LV + '._cleanup_rbd', ['instance'],
         used_in='rbd_root_disk (replaced on the driver instance)'),
    call(LV + '._get_neutron_events', ['network_info'],
         used_in='revert_vif._waited_ports'),
    call(LV + '._uri', used_in='audit (nova-guardrails audit)'),
    call('nova.virt.libvirt.host.Host.__init__', ['uri'], ['read_only'],
         used_in='audit'),
    call('nova.virt.libvirt.imagebackend.Backend.by_name',
         ['instance', 'name'], used_in='recovery_table '
                                       '_ensure_resize_snapshot'),
    call('nova.virt.libvirt.imagebackend.Rbd.create_snap', ['name'],
         used_in='recovery_table _ensure_resize_snapshot'),
    call('nova.virt.libvirt.imagebackend.Rbd.exists',
         used_in='recovery_table _ensure_resize_snapshot'),
    # Ceph through nova.
    call(RBD + '.RBDDriver.__init__', used_in='rbd_root_disk, rbd_trash'),
    call(RBD + '.RBDDriver.cleanup_volumes', ['filter_fn'],
         used_in='rbd_root_disk.trash_root'),
    call(RBD + '.RBDDriver.exists', ['name'], ['snapshot'],
         used_in='recovery_table _ensure_resize_snapshot'),
    call(RBD + '.RBDDriver.rollback_to_snap', ['volume', 'name'],
         used_in='recovery_table _ensure_resize_snapshot (hasattr)'),
    call(RBD + '.RADOSClient.__init__', ['driver', 'pool'],
         used_in='rbd_root_disk, rbd_trash'),
    call(RBD + '.RbdProxy.__init__', used_in='rbd_root_disk'),
    # Helpers.
    call('nova.network.neutron.get_client', ['context'], ['admin'],
         used_in='revert_vif.neutron_client'),
    call('nova.utils.temporary_mutation', ['obj'], ['read_deleted'],
         used_in='host_identity'),
    call('nova.virt.hardware.numa_get_constraints',
         ['flavor', 'image_meta'], used_in='recovery_table rollback_resize'),
    call('nova.servicegroup.api.API.service_is_up', ['member'],
         used_in='recovery_table.deferred._host_up'),
    call('nova.context.get_admin_context',
         used_in='host_identity, recovery_table'),
    # Objects (remotable: through nova-conductor on a compute node).
    call(OBJ + '.compute_node.ComputeNodeList.get_by_hypervisor',
         ['context', 'hypervisor_match'],
         used_in='host_identity._check_nodes'),
    call(OBJ + '.compute_node.ComputeNodeList.get_all_by_host',
         ['context', 'host'], used_in='host_identity, recovery_table'),
    call(OBJ + '.compute_node.ComputeNode.get_by_host_and_nodename',
         ['context', 'host', 'nodename'],
         used_in='recovery_table._fail_evacuation'),
    call(OBJ + '.instance.InstanceList.get_by_filters',
         ['context', 'filters'], ['expected_attrs'],
         used_in='host_identity, queued.unfinished_unshelves'),
    call(OBJ + '.instance.InstanceList.get_by_filters',
         ['context', 'filters'], ['sort_key', 'sort_dir', 'expected_attrs'],
         used_in='audit.rows'),
    call(OBJ + '.instance.InstanceList.get_uuids_by_host',
         ['context', 'host'], used_in='host_identity._check_guests'),
    call(OBJ + '.instance.Instance.get_by_uuid', ['context', 'uuid'],
         used_in='recovery_table'),
    call(OBJ + '.instance.Instance.save', keywords=['expected_task_state'],
         used_in='recovery_table.actions._save'),
    call(OBJ + '.instance.Instance.drop_migration_context',
         used_in='recovery_table'),
    call(OBJ + '.instance.Instance.get_network_info',
         used_in='recovery_table'),
    call(OBJ + '.migration.MigrationList.get_by_filters',
         ['context', 'filters'], ['sort_keys', 'sort_dirs'],
         used_in='host_identity, recovery_table'),
    call(OBJ + '.migration.Migration.get_by_id_and_instance',
         ['context', 'migration_id', 'instance_uuid'],
         used_in='recovery_table.actions._resize_migration'),
    call(OBJ + '.service.ServiceList.get_by_binary', ['context', 'binary'],
         ['include_disabled'], used_in='host_identity._known_hosts'),
    call(OBJ + '.service.Service.get_by_compute_host', ['context', 'host'],
         used_in='recovery_table.deferred._host_up'),
    call(OBJ + '.instance_action.InstanceActionList.get_by_instance_uuid',
         ['context', 'instance_uuid'], ['limit'],
         used_in='queued.latest_action'),
    call(OBJ + '.instance_action.InstanceActionEventList.get_by_action',
         ['context', 'action_id'], used_in='queued.latest_action'),
    call(OBJ + '.block_device.BlockDeviceMappingList.get_by_instance_uuid',
         ['context', 'instance_uuid'], used_in='recovery_table'),
    call(OBJ + '.request_spec.RequestSpec.get_by_instance_uuid',
         ['context', 'instance_uuid'],
         used_in='recovery_table rollback_resize'),
]

#: ComputeManager methods GuardrailsDriver.guardrails_bind replaces on the
#: manager instance; the guards' hooks take exactly these parameters.
WRAPPED = {
    CM + '.init_host': ('service_ref',),
    CM + '._destroy_evacuated_instances': ('context', 'node_cache'),
    CM + '._init_instance': ('context', 'instance'),
    CM + '.post_start_hook': (),
    # Their first call runs the guards' host checks (driver_init_host)
    # when the driver's init_host has not yet: nova 29 calls them first.
    CM + '._sanity_check_new_host': (),
    CM + '._ensure_existing_node_identity': ('service_ref',),
}

#: Attributes nova assigns in a constructor of the class or of a base.
ATTRIBUTES = [
    ('nova.compute.manager.ComputeManager',
     ('host', 'driver', 'network_api', 'compute_rpcapi', 'reportclient'),
     'every guard (manager.<attribute>)'),
    ('nova.compute.manager.ComputeVirtAPI', ('_compute',),
     'GuardrailsDriver.__init__ (reaches the manager)'),
    ('nova.virt.libvirt.driver.LibvirtDriver', ('image_backend', '_host'),
     'recovery_table _ensure_resize_snapshot, test_driver_loading'),
    ('nova.virt.libvirt.imagebackend.Rbd', ('driver', 'rbd_name'),
     'recovery_table _ensure_resize_snapshot'),
    ('nova.storage.rbd_utils.RBDDriver', ('pool',),
     'rbd_root_disk, rbd_trash'),
]

#: Module attributes: constants, classes, exceptions.
CONSTANTS = [
    ('nova.compute.task_states',
     ('SCHEDULING', 'BLOCK_DEVICE_MAPPING', 'NETWORKING', 'SPAWNING',
      'IMAGE_SNAPSHOT', 'IMAGE_SNAPSHOT_PENDING', 'IMAGE_PENDING_UPLOAD',
      'IMAGE_UPLOADING', 'IMAGE_BACKUP', 'UPDATING_PASSWORD', 'RESIZE_PREP',
      'RESIZE_MIGRATING', 'RESIZE_MIGRATED', 'RESIZE_FINISH',
      'RESIZE_REVERTING', 'RESIZE_CONFIRMING', 'REBOOTING',
      'REBOOT_PENDING', 'REBOOT_STARTED', 'REBOOTING_HARD',
      'REBOOT_PENDING_HARD', 'REBOOT_STARTED_HARD', 'PAUSING', 'UNPAUSING',
      'SUSPENDING', 'RESUMING', 'POWERING_OFF', 'POWERING_ON', 'RESCUING',
      'UNRESCUING', 'REBUILDING', 'REBUILD_BLOCK_DEVICE_MAPPING',
      'REBUILD_SPAWNING', 'MIGRATING', 'DELETING', 'SOFT_DELETING',
      'RESTORING', 'SHELVING', 'SHELVING_IMAGE_PENDING_UPLOAD',
      'SHELVING_IMAGE_UPLOADING', 'SHELVING_OFFLOADING', 'UNSHELVING',
      'soft_reboot_states', 'hard_reboot_states'),
     'recovery (RULES), queued, recovery_table, rbd_root_disk'),
    ('nova.compute.vm_states',
     ('ACTIVE', 'BUILDING', 'PAUSED', 'SUSPENDED', 'STOPPED', 'RESCUED',
      'RESIZED', 'SOFT_DELETED', 'DELETED', 'ERROR', 'SHELVED',
      'SHELVED_OFFLOADED', 'ALLOW_SOFT_REBOOT', 'ALLOW_HARD_REBOOT'),
     'recovery, queued, recovery_table, rbd_root_disk'),
    ('nova.compute.power_state', ('STATE_MAP', 'RUNNING'),
     'report.power_state_name, host_identity'),
    ('nova.objects.fields.InstanceState', ('ALL',), 'recovery'),
    ('nova.objects.fields.InstanceTaskState', ('ALL',), 'recovery'),
    ('nova.objects.fields.InstancePowerState',
     ('ALL', '_UNUSED', 'RUNNING', 'PAUSED', 'NOSTATE'), 'recovery'),
    ('nova.objects.fields.MigrationType', ('EVACUATION',),
     'host_identity'),
    ('nova.exception',
     ('NovaException', 'InstanceNotFound', 'UnexpectedTaskStateError',
      'InvalidConfiguration', 'ComputeHostNotFound'),
     'exception, recovery_table, host_identity, revert_vif'),
    ('nova.network.model', ('NetworkInfo',), 'host_identity'),
    ('nova.storage.rbd_utils', ('rbd',), 'rbd_trash (bindings present?)'),
    ('nova.db.main.api', ('DISABLE_DB_ACCESS',),
     'nova-compute has no database (tests/unit/test_no_database.py)'),
]

#: The recovery table covers every task_state: a release that adds or
#: removes one needs a row decided for it (recovery.RULES).
TASK_STATE_COUNT = 42

#: ``compute_<method>`` events the recovery reads from instance actions.
EVENTS = {
    'finish_resize': 'recovery_table (resize_migrated cast to this host)',
    'rebuild_instance': 'recovery_table (evacuation started here)',
    'revert_resize': 'recovery_table rollback_resize',
    'unshelve_instance': 'queued.unfinished_unshelves',
}

#: queued.QUEUEABLE_METHODS, each gated on the manager instance; the gate
#: finds the instance by the parameter name ``instance``.
QUEUEABLE = queued.QUEUEABLE_METHODS

#: Bodies the guards mirror or rely on: {qualified name: (what to
#: re-check, {body hash: nova releases (major) it was seen and re-checked
#: on})}. Hashes from body_hash() on Python 3.11 (ast.unparse may differ on
#: another Python). Differences between 29 and 34, re-checked:
#: - init_host: 29 runs _ensure_existing_node_identity and
#:   _sanity_check_new_host before driver.init_host (30 and later after
#:   it): on 29 nova's own new-host check refuses a standby over guests
#:   before host_identity can; 31 validates [pci] alias, 32 a threading
#:   semaphore, 34 runs _destroy_evacuated_instances only with
#:   supports_evacuate, adds process_instances_at_startup and Manila
#:   shares: no effect on the guards;
#: - _init_instance: 29 neither clears nor retries rebooting /
#:   rebooting_hard of a running guest (30 and later do);
#: - _finish_resize, finish_migration (34: Manila share_info),
#:   finish_revert_migration (33: old_guest; 34: share_info),
#:   _create_guest_with_network (32: InstanceEventTimeout; 33: timeout=;
#:   34: vTPM secret removed on failure): when the driver waits for vif
#:   events is unchanged; no effect on the guards.
BODIES = {
    CM + '.init_host': (
        'driver.init_host runs before nova\'s node checks and '
        '_destroy_evacuated_instances (host_identity refuses from '
        'driver_init_host); nova 29 runs _sanity_check_new_host first',
        {'111304ab3e14': '29', '8120b3bcf0d7': '30', 'e0bb9c0dbff7': '31',
         '67ef189381ab': '32 33', 'b72fa23f7751': '34'}),
    CM + '._init_instance': (
        'recovery.RULES: which task_states nova itself handles at start-up '
        '(executed_by nova) and how; nova 29 leaves a running guest\'s '
        'rebooting/rebooting_hard stuck',
        {'eef91ebeda60': '29', '42a8a3ec63cb': '30 31 32 33 34'}),
    CM + '._destroy_evacuated_instances': (
        'host_identity._destroy_as_nova / _finish_as_nova repeat its steps',
        {'7cd0c4b8840a': '29 30 31 32 33 34'}),
    CM + '._finish_resize': (
        'recovery_table _finish_resize_forward repeats its last steps '
        '(volume attachments, migration finished, vm_state resized)',
        {'7c84df231a5e': '29 30 31 32 33', 'a033f4ea1149': '34'}),
    LV + '._cleanup_rbd': (
        'rbd_root_disk.nova_selection: the images nova removes',
        {'68798146246c': '29 30 31 32 33 34'}),
    LV + '._get_neutron_events': (
        'revert_vif._waited_ports: the ports the driver waits for',
        {'007cad170f53': '29 30 31 32 33 34'}),
    LV + '._create_guest_with_network': (
        'revert_vif._driver_waits: when the driver waits for '
        'network-vif-plugged (virt_type, power_on, vif_plugging_timeout, '
        'vifs_already_plugged)',
        {'5432a0d752cf': '29 30 31', '2108c84e9d27': '32',
         '8cfef7c29306': '33', '48ed459168c3': '34'}),
    LV + '.finish_migration': (
        'revert_vif._driver_waits: finish_migration never waits '
        '(vifs_already_plugged=True)',
        {'7799d2bc3550': '29 30 31 32 33', 'e2d4e669a73f': '34'}),
    LV + '.finish_revert_migration': (
        'revert_vif._driver_waits; recovery_table revert_resize (old_flavor, '
        'the nova-resize snapshot rollback)',
        {'533dac7e897d': '29 30 31 32', '1483c11e17b6': '33',
         '8ea90809d4e8': '34'}),
    'nova.storage.rbd_utils.RBDDriver.cleanup_volumes': (
        'rbd_root_disk.trash_root and nova_selection',
        {'b37e7615e370': '29 30 31 32 33 34'}),
}


# Resolution and source ------------------------------------------------------

def resolve(target):
    """The object named ``target`` (module path, then attributes)."""
    parts = target.split('.')
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(target)


def _split(target):
    """(module, [class names], function) of a dotted target."""
    parts = target.split('.')
    for i in range(len(parts), 0, -1):
        name = '.'.join(parts[:i])
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        return name, parts[i:]
    raise ImportError(target)


_TREES = {}


def _tree(module):
    if module not in _TREES:
        path = inspect.getsourcefile(importlib.import_module(module))
        with open(path, encoding='utf-8') as source:
            _TREES[module] = ast.parse(source.read(), path)
    return _TREES[module]


def _find(body, name, kinds):
    for node in body:
        if isinstance(node, kinds) and node.name == name:
            return node
    return None


def function_node(target):
    """The ast FunctionDef of ``target`` in its defining module's source.

    A class's method is looked up along its MRO (within nova), so an
    inherited method is found where it is defined.
    """
    module, names = _split(target)
    if len(names) == 1:
        node = _find(_tree(module).body, names[0],
                     (ast.FunctionDef, ast.AsyncFunctionDef))
        if node is None:
            raise LookupError('%s: no function %s in %s' % (
                target, names[0], module))
        return node
    cls = resolve('.'.join([module] + names[:-1]))
    for _, class_node in _nova_class_nodes(cls):
        node = _find(class_node.body, names[-1],
                     (ast.FunctionDef, ast.AsyncFunctionDef))
        if node is not None:
            return node
    raise LookupError('%s: not defined in the source of %s or its bases'
                      % (target, cls.__name__))


def parameters(node):
    """[(name, kind, has_default)] of a FunctionDef, self/cls dropped."""
    args = node.args
    positional = args.posonlyargs + args.args
    defaults = [False] * (len(positional) - len(args.defaults)) + \
        [True] * len(args.defaults)
    out = [(a.arg, 'positional', d) for a, d in zip(positional, defaults)]
    if out and out[0][0] in ('self', 'cls'):
        out = out[1:]
    if args.vararg:
        out.append((args.vararg.arg, 'varargs', True))
    out += [(a.arg, 'keyword_only', d is not None)
            for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        out.append((args.kwarg.arg, 'varkw', True))
    return out


def call_problems(entry):
    """Why nova no longer accepts ``entry``'s call ([] when it does)."""
    try:
        resolve(entry.target)
        params = parameters(function_node(entry.target))
    except (ImportError, AttributeError, LookupError) as error:
        return ['missing (%s: %s)' % (type(error).__name__, error)]
    problems = []
    positional = [p for p in params if p[1] == 'positional']
    names = [p[0] for p in positional[:len(entry.positional)]]
    if names != list(entry.positional):
        problems.append('positional parameters are now (%s), the guards '
                        'pass (%s)' % (', '.join(names),
                                       ', '.join(entry.positional)))
    by_name = {p[0]: p for p in params}
    takes_kwargs = any(p[1] == 'varkw' for p in params)
    for keyword in entry.keywords:
        if keyword not in by_name and not takes_kwargs:
            problems.append('no parameter %r any more' % keyword)
    passed = set(entry.positional) | set(entry.keywords)
    for name, kind, has_default in params:
        if kind in ('positional', 'keyword_only') and not has_default and \
                name not in passed:
            problems.append('new required parameter %r' % name)
    return problems


def wrapped_problems(target, expected):
    try:
        resolve(target)
        params = parameters(function_node(target))
    except (ImportError, AttributeError, LookupError) as error:
        return ['missing (%s: %s)' % (type(error).__name__, error)]
    names = tuple(p[0] for p in params)
    if names != expected:
        return ['parameters are now (%s); the guards\' hooks take (%s)' % (
            ', '.join(names), ', '.join(expected))]
    return []


def _nova_class_nodes(cls):
    """``(class, ClassDef node)`` of ``cls`` and of its bases defined in
    nova, in method resolution order.
    """
    for klass in inspect.getmro(cls):
        if not klass.__module__.startswith('nova.'):
            continue
        class_node = _find(_tree(klass.__module__).body, klass.__name__,
                           (ast.ClassDef,))
        if class_node is not None:
            yield klass, class_node


def assigned_attributes(cls):
    """Names assigned as ``self.<name> = ...`` anywhere in the class or its
    nova bases, and properties.
    """
    names = set()
    for klass, class_node in _nova_class_nodes(cls):
        for node in ast.walk(class_node):
            targets = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets = [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if (isinstance(sub, ast.Attribute) and
                            isinstance(sub.value, ast.Name) and
                            sub.value.id == 'self'):
                        names.add(sub.attr)
        names.update(name for name, value in vars(klass).items()
                     if isinstance(value, property))
    return names


def body_hash(target):
    """sha256 (12 hex digits) of the function's body: ast.unparse of its
    statements without the docstring (the signature is checked apart;
    comments, formatting and annotations do not count).
    """
    body = list(function_node(target).body)
    if body and isinstance(body[0], ast.Expr) and isinstance(
            getattr(body[0], 'value', None), ast.Constant) and isinstance(
                body[0].value.value, str):
        body = body[1:]
    text = ast.unparse(ast.Module(body=body, type_ignores=[]))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def event_problems(method):
    try:
        node = function_node(CM + '.' + method)
    except (ImportError, AttributeError, LookupError) as error:
        return ['missing (%s)' % error]
    for decorator in node.decorator_list:
        if not isinstance(decorator, ast.Call):
            continue
        name = getattr(decorator.func, 'id', None)
        prefixes = [getattr(k.value, 'value', None)
                    for k in decorator.keywords if k.arg == 'prefix']
        if name == 'wrap_instance_event' and 'compute' in prefixes:
            return []
    return ['not decorated with wrap_instance_event(prefix=\'compute\') '
            'any more: no compute_%s event is recorded' % method]


def queueable_problems(method):
    try:
        params = parameters(function_node(CM + '.' + method))
    except (ImportError, AttributeError, LookupError) as error:
        return ['missing (%s)' % error]
    names = [p[0] for p in params]
    if not names or names[0] != 'context' or 'instance' not in names:
        return ['parameters are now (%s): the gate needs context first and '
                'an instance parameter' % ', '.join(names)]
    return []


def report():
    """[(kind, name, used_in, problems)] for every internal."""
    rows = []
    for entry in CALLS:
        rows.append(('call', entry.target, entry.used_in,
                     call_problems(entry)))
    for target, expected in WRAPPED.items():
        rows.append(('wrapped', target, 'GuardrailsDriver.guardrails_bind',
                     wrapped_problems(target, expected)))
    for cls_name, names, used_in in ATTRIBUTES:
        try:
            have = assigned_attributes(resolve(cls_name))
        except (ImportError, AttributeError, LookupError) as error:
            have, missing = set(), 'class missing: %s' % error
        else:
            missing = None
        for name in names:
            rows.append(('attribute', '%s.%s' % (cls_name, name), used_in,
                         [missing or 'no longer assigned']
                         if name not in have else []))
    for module, names, used_in in CONSTANTS:
        try:
            obj = resolve(module)
        except (ImportError, AttributeError) as error:
            obj, missing = None, 'missing: %s' % error
        else:
            missing = None
        for name in names:
            rows.append(('constant', '%s.%s' % (module, name), used_in,
                         [missing] if missing else
                         [] if hasattr(obj, name) else ['missing']))
    from nova.objects import fields
    count = len(fields.InstanceTaskState.ALL)
    rows.append(('constant', 'nova.objects.fields.InstanceTaskState.ALL '
                 '(%d task_states)' % TASK_STATE_COUNT,
                 'recovery.RULES covers each',
                 [] if count == TASK_STATE_COUNT else
                 ['%d task_states now: decide a recovery row for each new '
                  'one' % count]))
    for method, used_in in EVENTS.items():
        rows.append(('event', 'compute_' + method, used_in,
                     event_problems(method)))
    for method in QUEUEABLE:
        rows.append(('queueable', CM + '.' + method,
                     'queued.RequestLedger.wrap', queueable_problems(method)))
    for target, (recheck, known) in BODIES.items():
        try:
            digest = body_hash(target)
        except (ImportError, AttributeError, LookupError) as error:
            rows.append(('body', target, recheck, ['missing (%s)' % error]))
            continue
        rows.append(('body', target, recheck, [] if digest in known else [
            'body %s not seen on a tested release (known: %s): re-check %s, '
            'then add the hash to BODIES' % (
                digest, ', '.join('%s on %s' % (h, r) for h, r in
                                  known.items()) or 'none', recheck)]))
    return rows


class NovaInternalsTest(unittest.TestCase):
    """One test per kind; each failure names the internal and nova's
    version.
    """

    def _check(self, kind):
        problems = ['%s (%s): %s' % (name, used_in, '; '.join(found))
                    for k, name, used_in, found in report()
                    if k == kind and found]
        if problems:
            self.fail('nova %s changed %d internal(s) nova-guardrails '
                      'relies on:\n  %s' % (NOVA, len(problems),
                                            '\n  '.join(problems)))

    def test_calls(self):
        self._check('call')

    def test_wrapped_methods(self):
        self._check('wrapped')

    def test_attributes(self):
        self._check('attribute')

    def test_constants(self):
        self._check('constant')

    def test_instance_action_events(self):
        self._check('event')

    def test_queueable_rpc_methods(self):
        self._check('queueable')

    def test_mirrored_bodies(self):
        self._check('body')


if __name__ == '__main__':
    for kind, name, used_in, found in report():
        digest = ''
        if kind == 'body':
            try:
                digest = ' ' + body_hash(name)
            except Exception:
                pass
        print('%s\t%s\t%s\t%s%s\t%s' % (NOVA, kind, name,
                                        '; '.join(found) or 'ok', digest,
                                        used_in))
