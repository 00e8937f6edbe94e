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
"""What the scenarios rely on in the tier itself.

``Compute.wait_up`` after a kill and a quick restart: nova-compute is up in
os-services from a heartbeat of the new process, not from the killed one's
last heartbeat. When a scenario booted on the strength of the old heartbeat,
the scheduler's ComputeFilter dropped the host as soon as that heartbeat was
``service_down_time`` (60 s) old, before the new process had reported: the
boot failed with NoValidHost ("not enough hosts available") in a test where
no guard had run yet.
"""

import datetime

from real import deployment


def test_wait_up_after_a_restart_sees_the_new_process_report(tier, measured):
    compute = tier.compute('hv1', guarded=False).start().wait_up()
    compute.kill()
    # The next whole second (os-services gives whole seconds).
    killed = (datetime.datetime.now(datetime.timezone.utc) +
              datetime.timedelta(seconds=1)).replace(tzinfo=None,
                                                     microsecond=0)
    compute.start().wait_up()
    [service] = tier.services('hv1')
    measured(killed=killed.isoformat(), updated_at=service['updated_at'])
    # A service never updated is "up" from its created_at; then from its
    # last heartbeat (nova.servicegroup.drivers.db.DbDriver.is_up).
    assert service['state'] == 'up'
    updated = deployment.service_updated_at(service)
    assert updated, (
        'wait_up returned before any heartbeat (up from created_at)')
    # Only a live process saves its service record: a record saved after
    # the kill is the new process's heartbeat.
    assert updated >= killed, (
        'wait_up returned on the killed process\'s heartbeat (%s, killed '
        'at %s)' % (updated, killed))
