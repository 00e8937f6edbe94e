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
"""The operations the crash matrix drives, and how each is set up.

An :class:`Operation` is a nova lifecycle operation driven through nova's
compute API on the embedded nova: ``prepare(test)`` starts the computes
(:data:`H1`, and :data:`H2` for moves) and brings a server to the state the
operation starts from; its ``steps`` are API requests, each with the
condition that ends it (a server status read from nova-api, or the server
gone). :data:`OPERATIONS` is the matrix's rows in order, :data:`BY_NAME`
the ``--ops`` names, :data:`FAST_SUBSET` what every ``make test`` runs.

Stand-ins for what nova's functional fixtures cannot do, each as nova's own
functional tests do it: the instance directory the libvirt driver's
``rescue`` writes ``unrescue.xml`` into (:func:`_instance_dirs`); the disk
copy of a resize or cold migration over SSH
(:func:`nova_guardrails.lab.scenarios.fake_disk_migration`); libvirtd's
side of a live migration, ``Domain.migrateToURI3``
(:func:`_live_migration_stub`, one hypervisor crash point on the source).
"""

import dataclasses
import threading

import fixtures

from nova_guardrails.lab.crash_matrix import tracer


@dataclasses.dataclass
class Operation:
    """A lifecycle operation of the matrix.

    :ivar name: identifier (``--ops``).
    :ivar prepare: ``f(test) -> server``: computes started, a server in the
        state the operation starts from.
    :ivar steps: ``[(f(test, server), done(test, server) -> bool)]``: the
        API requests of the operation, each with its completion condition.
    :ivar deletes: the operation deletes the server (its guest and disks
        may go).
    :ivar conf: extra nova.conf text, with its section headers.
    :ivar revive: hosts whose nova-compute starts again at the end of the
        story (an evacuation's source, repaired), before the invariants.
    :ivar queueable: its one request is a cast to the server's host that
        may wait in the queue while that nova-compute is down: the matrix
        adds a :data:`~nova_guardrails.lab.crash_matrix.tracer.LATE` cell.
    """

    name: str
    prepare: object
    steps: list
    deletes: bool = False
    conf: str = ''
    revive: tuple = ()
    queueable: bool = False


#: The computes of the matrix: every operation starts on H1; moves go to H2.
H1, H2 = 'compute1', 'compute2'


def _status(*statuses):
    def done(test, server):
        return test.api.get_server(server['id'])['status'] in statuses
    return done


def _gone(test, server):
    from nova.tests.functional.api import client
    try:
        test.api.get_server(server['id'])
    except client.OpenStackApiNotFoundException:
        return True
    return False


def _action(body):
    def request(test, server):
        test.api.post_server_action(server['id'], body)
    return request


def _instance_dirs(test):
    # nova's fake image backend writes no files, so the instance directory
    # the libvirt driver's rescue writes unrescue.xml into does not exist:
    # create it, as the real image backend does when it creates disks.
    from nova.virt.libvirt import driver as libvirt_driver
    from nova.virt.libvirt import utils as libvirt_utils
    import os
    rescue = libvirt_driver.LibvirtDriver.rescue

    def rescue_with_dir(driver, context, instance, *args, **kwargs):
        os.makedirs(libvirt_utils.get_instance_path(instance), exist_ok=True)
        return rescue(driver, context, instance, *args, **kwargs)
    test.useFixture(fixtures.MonkeyPatch(
        'nova.virt.libvirt.driver.LibvirtDriver.rescue', rescue_with_dir))


def _in_background(request):
    """A request nova-api makes as an RPC *call* to the compute: a crashed
    compute never answers, so it is sent from a thread of its own and its
    error (a MessagingTimeout after rpc_response_timeout) ignored.
    """
    def run(test, server):
        def send():
            try:
                request(test, server)
            except Exception:
                pass
        threading.Thread(target=send, daemon=True).start()
    return run


def _one_host(test):
    _instance_dirs(test)
    test.start_compute(H1)
    return test._create_server(networks='none', host=H1)


AGENT_IMAGE = 'c0ffee00-0000-4000-8000-00000000a6e7'


def _agent_server(test):
    # set_admin_password needs the QEMU guest agent (image property).
    import copy
    from nova.tests.fixtures import glance
    image = copy.deepcopy(glance.GlanceFixture.image1)
    image.update(id=AGENT_IMAGE, name='with-guest-agent')
    image['properties'] = dict(image['properties'],
                               hw_qemu_guest_agent='yes')
    test.glance.create(None, image)
    test.start_compute(H1)
    return test._create_server(networks='none', host=H1,
                               image_uuid=AGENT_IMAGE)


def _two_hosts(test):
    from nova_guardrails.lab import scenarios
    _instance_dirs(test)
    scenarios.fake_disk_migration(test)
    test.flags(allow_resize_to_same_host=False)
    test.start_compute(H1)
    test.start_compute(H2)
    _live_migration_stub(test)
    return test._create_server(networks='none', host=H1)


def _live_migration_stub(test):
    # fakelibvirt's migrateToURI3 always fails; nova's own functional tests
    # (LibvirtMigrationMixin) stub it. Here it does what libvirtd does, as
    # one hypervisor side effect (libvirtd, not nova-compute, runs the
    # migration, so a dying nova-compute does not stop it half-way): the
    # guest runs on the destination, the source's domain stops, its job
    # completes.
    def migrate(domain, destination, params, flags):
        recording = getattr(test, 'matrix_tracer', None)
        with recording.quiet() if recording else _nothing():
            source = domain._connection
            for host, compute in test.computes.items():
                conn = compute.driver._host.get_connection()
                if conn is not source:
                    conn.createXML(params['destination_xml'], 0)
                    break
            domain.destroy()
            domain.complete_job()
        if recording:
            # nova runs the migration in a thread of its own: the source.
            recording.event(
                tracer.HYPERVISOR, 'migrateToURI3',
                tracer.compute_host_of_caller() or
                recording.host_of_connection(domain._connection),
                defer=True)
    test.useFixture(fixtures.MonkeyPatch(
        tracer.FAKELIBVIRT + '.Domain.migrateToURI3', migrate))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


def _then(prepare, *requests):
    """prepare, then the given (request, done) steps, waiting for each."""
    def run(test):
        server = prepare(test)
        for request, done in requests:
            request(test, server)
            test.wait_until(lambda: done(test, server), timeout=30)
        return server
    return run


def _stopped(test):
    return _then(_one_host, (_action({'os-stop': None}),
                             _status('SHUTOFF')))(test)


def _boot_prepare(test):
    test.start_compute(H1)
    return None


def _boot_request(test, server):
    created = test.api.post_server(
        {'server': test._build_server(networks='none')})
    server.update(created)


def _evacuation_prepare(test):
    server = _two_hosts(test)
    # The source host dies: its nova-compute and its guests with it.
    conn = test.computes[H1].driver._host.get_connection()
    conn._guardrails_host = H1
    test.computes[H1].stop()
    conn.lookupByUUIDString(server['id']).destroy()
    test.admin_api.put_service_force_down(
        test.admin_api.get_services(binary='nova-compute',
                                    host=H1)[0]['id'], True)
    return server


def _snapshot_done(test, server):
    return test.api.get_server(server['id'])['OS-EXT-STS:task_state'] is None


IMAGE = '155d900f-4e14-4e4c-a73d-069cbf4541e6'

OPERATIONS = [
    Operation('boot', _boot_prepare,
              [(_boot_request, _status('ACTIVE'))]),
    Operation('soft_reboot', _one_host,
              [(_action({'reboot': {'type': 'SOFT'}}), _status('ACTIVE'))],
              queueable=True),
    Operation('hard_reboot', _one_host,
              [(_action({'reboot': {'type': 'HARD'}}), _status('ACTIVE'))],
              queueable=True),
    Operation('stop', _one_host,
              [(_action({'os-stop': None}), _status('SHUTOFF'))],
              queueable=True),
    Operation('start', _stopped,
              [(_action({'os-start': None}), _status('ACTIVE'))],
              queueable=True),
    Operation('pause', _one_host,
              [(_action({'pause': None}), _status('PAUSED'))],
              queueable=True),
    Operation('unpause',
              _then(_one_host, (_action({'pause': None}),
                                _status('PAUSED'))),
              [(_action({'unpause': None}), _status('ACTIVE'))],
              queueable=True),
    Operation('suspend', _one_host,
              [(_action({'suspend': None}), _status('SUSPENDED'))],
              queueable=True),
    Operation('resume',
              _then(_one_host, (_action({'suspend': None}),
                                _status('SUSPENDED'))),
              [(_action({'resume': None}), _status('ACTIVE'))],
              queueable=True),
    Operation('rescue', _one_host,
              [(_action({'rescue': None}), _status('RESCUE'))],
              queueable=True),
    Operation('unrescue',
              _then(_one_host, (_action({'rescue': None}),
                                _status('RESCUE'))),
              [(_action({'unrescue': None}), _status('ACTIVE'))],
              queueable=True),
    Operation('snapshot', _one_host,
              [(_action({'createImage': {'name': 'snap'}}),
                _snapshot_done)],
              conf='[workarounds]\ndisable_libvirt_livesnapshot = true\n'),
    Operation('backup', _one_host,
              [(_action({'createBackup': {'name': 'bak',
                                          'backup_type': 'daily',
                                          'rotation': 1}}),
                _snapshot_done)],
              queueable=True),
    Operation('rebuild', _one_host,
              [(_action({'rebuild': {'imageRef': IMAGE}}),
                _status('ACTIVE'))]),
    Operation('resize_confirm', _two_hosts,
              [(_action({'resize': {'flavorRef': '2'}}),
                _status('VERIFY_RESIZE')),
               (_action({'confirmResize': None}), _status('ACTIVE'))]),
    Operation('resize_revert', _two_hosts,
              [(_action({'resize': {'flavorRef': '2'}}),
                _status('VERIFY_RESIZE')),
               (_action({'revertResize': None}), _status('ACTIVE'))]),
    Operation('cold_migrate', _two_hosts,
              [(_action({'migrate': None}), _status('VERIFY_RESIZE')),
               (_action({'confirmResize': None}), _status('ACTIVE'))]),
    Operation('live_migrate', _two_hosts,
              [(_action({'os-migrateLive': {'host': H2,
                                            'block_migration': 'auto'}}),
                lambda test, server: test.api.get_server(server['id'])[
                    'OS-EXT-SRV-ATTR:host'] == H2 and
                _status('ACTIVE')(test, server))],
              # The crashed source's post-live-migration call waits
              # long_rpc_timeout (1800 s) for an answer; nova's test fixture
              # makes executor teardown wait for it.
              conf='[DEFAULT]\nrpc_response_timeout = 5\n'
                   'long_rpc_timeout = 5\n'),
    Operation('evacuate', _evacuation_prepare,
              [(_action({'evacuate': {}}),
                lambda test, server: test.api.get_server(server['id'])[
                    'OS-EXT-SRV-ATTR:host'] == H2 and
                _status('ACTIVE', 'SHUTOFF')(test, server))],
              revive=(H1,)),
    Operation('shelve', _one_host,
              [(_action({'shelve': None}), _status('SHELVED'))],
              conf='[DEFAULT]\nshelved_offload_time = -1\n',
              queueable=True),
    Operation('shelve_offload',
              _then(_one_host, (_action({'shelve': None}),
                                _status('SHELVED'))),
              [(_action({'shelveOffload': None}),
                _status('SHELVED_OFFLOADED'))],
              conf='[DEFAULT]\nshelved_offload_time = -1\n'),
    Operation('unshelve',
              _then(_one_host, (_action({'shelve': None}),
                                _status('SHELVED_OFFLOADED'))),
              [(_action({'unshelve': None}), _status('ACTIVE'))],
              conf='[DEFAULT]\nshelved_offload_time = 0\n'),
    Operation('delete', _one_host,
              [(lambda test, server: test.api.delete_server(server['id']),
                _gone)], deletes=True),
    Operation('soft_delete', _one_host,
              [(lambda test, server: test.api.delete_server(server['id']),
                _status('SOFT_DELETED'))],
              conf='[DEFAULT]\nreclaim_instance_interval = 3600\n'),
    Operation('restore',
              _then(_one_host,
                    (lambda test, server: test.api.delete_server(
                        server['id']), _status('SOFT_DELETED'))),
              [(_action({'restore': None}), _status('ACTIVE'))],
              conf='[DEFAULT]\nreclaim_instance_interval = 3600\n',
              queueable=True),
    Operation('set_admin_password', _agent_server,
              [(_in_background(_action({'changePassword': {
                  'adminPass': 'n3w'}})), _snapshot_done)],
              conf='[DEFAULT]\nrpc_response_timeout = 3\n'),
]
BY_NAME = {op.name: op for op in OPERATIONS}
#: The subset every CI run executes (make test); the full matrix has its
#: own command.
FAST_SUBSET = ('soft_reboot', 'suspend', 'resize_revert')
