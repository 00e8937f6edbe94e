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
"""``nova-guardrails rbd-trash``: root disks moved to the rbd trash.

The ``rbd_root_disk`` guard moves a deleted instance's root disk
``<uuid>_disk`` to the pool's rbd trash when ``[guardrails] rbd_trash_delay``
is positive. These commands read the Ceph settings from nova.conf's
``[libvirt]`` section (``images_rbd_pool``, ``images_rbd_ceph_conf``,
``rbd_user``) and use nova's own ``RBDDriver`` to connect.
"""

import datetime
import sys

import prettytable

from nova_guardrails.guards.rbd_root_disk import root_disk

SUFFIX = '_disk'


def _rbd_driver(config_files):
    import nova.conf
    from nova.storage import rbd_utils
    conf = nova.conf.CONF
    args = []
    for path in config_files or ['/etc/nova/nova.conf']:
        args += ['--config-file', path]
    conf(args, project='nova')
    if rbd_utils.rbd is None:
        raise SystemExit('the rbd Python bindings are not installed '
                         '(Debian: python3-rbd)')
    return rbd_utils, rbd_utils.RBDDriver()


def trash_entries(rbd_utils, driver):
    """Root disks in the trash: dicts with id, name, instance_uuid and
    deferment_end_time (UTC).
    """
    with rbd_utils.RADOSClient(driver, driver.pool) as client:
        entries = list(rbd_utils.rbd.RBD().trash_list(client.ioctx))
    return [dict(id=e['id'], name=e['name'],
                 instance_uuid=e['name'][:-len(SUFFIX)],
                 deferment_end_time=e['deferment_end_time'])
            for e in entries if e['name'].endswith(SUFFIX)]


def restore(rbd_utils, driver, instance_uuid):
    """Restore the root disk of ``instance_uuid`` under its original name.

    :returns: the image name.
    :raises LookupError: no such root disk in the trash.
    """
    name = root_disk(instance_uuid)
    matches = [e for e in trash_entries(rbd_utils, driver)
               if e['name'] == name]
    if not matches:
        raise LookupError('no root disk of instance %s in the rbd trash of '
                          'pool %s' % (instance_uuid, driver.pool))
    with rbd_utils.RADOSClient(driver, driver.pool) as client:
        rbd_utils.rbd.RBD().trash_restore(client.ioctx, matches[0]['id'],
                                          name)
    return name


def main(args):
    rbd_utils, driver = _rbd_driver(args.config_file)
    if args.trash_command == 'list':
        table = prettytable.PrettyTable(
            ['instance', 'image', 'trash id', 'purgeable from (UTC)'])
        table.align = 'l'
        for entry in trash_entries(rbd_utils, driver):
            end = entry['deferment_end_time']
            if isinstance(end, datetime.datetime):
                end = end.strftime('%Y-%m-%d %H:%M:%S')
            table.add_row([entry['instance_uuid'], entry['name'],
                           entry['id'], end])
        print('pool %s' % driver.pool)
        print(table.get_string())
        return 0
    try:
        name = restore(rbd_utils, driver, args.instance_uuid)
    except LookupError as error:
        print(error, file=sys.stderr)
        return 1
    print('restored %s/%s' % (driver.pool, name))
    return 0
