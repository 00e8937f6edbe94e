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
"""Interrupted here, or still queued? (a request accepted while nova-compute
was down)

At start-up an instance in a transitional task_state was either interrupted
on this host (nova-compute started the operation and died), or its request
is still in the message queue for this host (nova-api set the task_state and
cast the request while nova-compute was down): acting on the second would
run the operation twice, or make the queued request fail on its expected
task_state.

nova's own records tell the two apart: nova-api records an *instance action*
when it accepts a request, and every ComputeManager method decorated with
``wrap_instance_event(prefix='compute')`` records a ``compute_<method>``
*event* on that action when it starts. For a task_state that nova-api (or the
conductor) sets before the request reaches a compute, :func:`classify`
answers from the instance's latest action:

* a ``compute_*`` event started on it: ``interrupted``;
* no compute event: ``queued``, left alone and checked again after
  ``[guardrails] queued_grace_seconds``;
* no action at all (purged by ``nova-manage db archive_deleted_rows``, or
  never recorded): ``unknown``, treated as interrupted, as nova does.

task_states set only by nova-compute itself (``reboot_started``,
``spawning``, ``resize_migrated``, ...) are always ``interrupted``.

:func:`latest_action` reads what start-up needs in two round trips per
instance through nova's remotable objects: on a compute node they go through
nova-conductor (nova-compute has no database access).
"""

import dataclasses
import functools
import inspect
import threading

from nova.compute import task_states as ts
from nova.compute import vm_states
from nova import objects

INTERRUPTED = 'interrupted'
QUEUED = 'queued'
UNKNOWN = 'unknown'

#: task_states nova-api or the conductor set before casting the request to
#: a compute (nova.compute.api.API, nova.conductor.manager).
API_SET_TASK_STATES = frozenset([
    ts.REBOOTING, ts.REBOOTING_HARD, ts.POWERING_OFF, ts.POWERING_ON,
    ts.PAUSING, ts.UNPAUSING, ts.SUSPENDING, ts.RESUMING, ts.RESCUING,
    ts.UNRESCUING, ts.IMAGE_SNAPSHOT, ts.IMAGE_BACKUP, ts.UPDATING_PASSWORD,
    ts.SOFT_DELETING, ts.RESTORING, ts.DELETING, ts.SHELVING,
    ts.SHELVING_OFFLOADING, ts.UNSHELVING, ts.RESIZE_REVERTING,
    ts.REBUILDING, ts.MIGRATING, ts.RESIZE_PREP,
])


#: task_states another compute sets before casting the request to this one,
#: with the compute event that shows this host took it up: a resize's
#: source records the instance on its destination in resize_migrated, then
#: casts finish_resize there (ComputeManager._resize_instance).
CAST_BY_ANOTHER_HOST = {
    ts.RESIZE_MIGRATED: 'compute_finish_resize',
}

#: Every task_state :func:`classify` may answer QUEUED for.
MAYBE_QUEUED = API_SET_TASK_STATES | frozenset(CAST_BY_ANOTHER_HOST)


@dataclasses.dataclass(frozen=True)
class LatestAction:
    """The latest instance action of an instance and its compute events.

    :ivar action_id: ``instance_actions.id``.
    :ivar action: the action name (``reboot``, ``suspend``, ...).
    :ivar request_id: the request that recorded it.
    :ivar compute_events: names of the ``compute_*`` events started on it,
        on any host.
    :ivar event_hosts: ``(name, host)`` of those events.
    :ivar unfinished: ``(name, host)`` of those never recorded finished
        (their nova-compute died in them).
    """

    action_id: int
    action: str
    request_id: str
    compute_events: tuple
    event_hosts: tuple = ()
    unfinished: tuple = ()

    def started_on(self, host):
        """Names of the compute events started on ``host``."""
        return tuple(name for name, where in self.event_hosts
                     if where == host)


def latest_action(context, instance_uuid):
    """The latest instance action of ``instance_uuid`` with its compute
    events, or None when it has none.

    Two round trips through nova's remotable objects (nova-conductor on a
    compute node, which has no database): ``InstanceActionList.
    get_by_instance_uuid(limit=1)`` (nova sorts by ``created_at``, ``id``,
    newest first) and ``InstanceActionEventList.get_by_action``.

    :param context: a nova RequestContext (admin).
    :param instance_uuid: the instance.
    :returns: :class:`LatestAction` or None.
    """
    actions = objects.InstanceActionList.get_by_instance_uuid(
        context, instance_uuid, limit=1)
    if not actions:
        return None
    action = actions[0]
    events = [(e.event, e.host, e.finish_time is None)
              for e in sorted(objects.InstanceActionEventList.get_by_action(
                  context, action.id), key=lambda e: e.id)
              if e.event and e.event.startswith('compute_')]
    return LatestAction(
        action.id, action.action, action.request_id,
        tuple(name for name, _, _ in events),
        tuple((name, host) for name, host, _ in events),
        tuple((name, host) for name, host, open_ in events if open_))


def latest_actions(context, instance_uuids):
    """``{instance_uuid: LatestAction}`` for those of ``instance_uuids``
    that have an action: :func:`latest_action` for each (two round trips
    per instance; call it for instances in a transitional task_state only).
    """
    found = {}
    for uuid in sorted(set(instance_uuids)):
        latest = latest_action(context, uuid)
        if latest is not None:
            found[uuid] = latest
    return found


def classify(task_state, latest, host=None):
    """``(verdict, why)`` for an instance in ``task_state``.

    :param task_state: the instance's task_state (not None).
    :param latest: its :class:`LatestAction` or None.
    :param host: this compute host: only its own compute events mean the
        request reached it (a resize's or live migration's first hop runs
        on the other host). None: any host's.
    :returns: ``(INTERRUPTED | QUEUED | UNKNOWN, one-line reason)``.
    """
    if task_state not in MAYBE_QUEUED:
        return INTERRUPTED, 'task_state set by nova-compute itself'
    if latest is None:
        return UNKNOWN, ('no instance action recorded: treated as '
                         'interrupted, as nova does')
    watched = CAST_BY_ANOTHER_HOST.get(task_state)
    if watched is not None:
        if watched in (latest.started_on(host) if host is not None else
                       latest.compute_events):
            return INTERRUPTED, '%s started on %s' % (watched,
                                                      host or 'a compute')
        return QUEUED, ('%s: %s cast by another compute (request %s) but '
                        'not started here: may still be queued' % (
                            latest.action, watched[len('compute_'):],
                            latest.request_id))
    started = (latest.started_on(host) if host is not None else
               latest.compute_events)
    if started:
        return INTERRUPTED, ('%s started on %s (%s)' % (
            latest.action, host or 'a compute', ', '.join(started)))
    return QUEUED, ('%s requested (request %s) but %s did not start it: '
                    'still queued' % (latest.action, latest.request_id,
                                      host or 'no compute'))


def unfinished_unshelves(context, host):
    """Offloaded instances whose unshelve started on ``host`` and never
    finished there (the nova-compute of ``host`` died before its claim
    recorded the host on the instance).

    One ``InstanceList.get_by_filters`` round trip for the cell's instances
    that are shelved_offloaded, without a host and in task_state spawning
    or unshelving (unshelves in flight: a handful, not the cell's history),
    then :func:`latest_action` for each of them.

    :returns: list of ``(instance, LatestAction)``.
    """
    candidates = objects.InstanceList.get_by_filters(
        context, {'vm_state': vm_states.SHELVED_OFFLOADED, 'host': None,
                  'task_state': [ts.SPAWNING, ts.UNSHELVING],
                  'deleted': False},
        expected_attrs=[])
    found = []
    for instance in candidates:
        if instance.host is not None:
            continue
        latest = latest_action(context, instance.uuid)
        if latest and ('compute_unshelve_instance', host) in \
                latest.unfinished:
            found.append((instance, latest))
    return found


#: ComputeManager RPC methods that carry a request which may have been
#: queued for this host while its nova-compute was down (the task_states of
#: API_SET_TASK_STATES, and finish_resize cast by a resize's source).
QUEUEABLE_METHODS = (
    'reboot_instance', 'start_instance', 'stop_instance', 'pause_instance',
    'unpause_instance', 'suspend_instance', 'resume_instance',
    'rescue_instance', 'unrescue_instance', 'snapshot_instance',
    'backup_instance', 'set_admin_password', 'soft_delete_instance',
    'restore_instance', 'terminate_instance', 'shelve_instance',
    'shelve_offload_instance', 'unshelve_instance', 'revert_resize',
    'rebuild_instance', 'prep_resize', 'resize_instance', 'finish_resize',
    'live_migration',
)


class RequestLedger:
    """Which queued requests the recovery took over, so that a late
    delivery of one of them does not run a second time.

    A request is named by ``(instance_uuid, request_id)``: nova-api records
    the instance action with the request id of the API call, and the RPC
    message it casts carries the same request id in its context.

    :meth:`wrap` puts a gate on :data:`QUEUEABLE_METHODS` of one
    ComputeManager instance (instance attributes, what oslo.messaging's
    dispatcher calls). Each delivery of a watched request either starts
    (:meth:`starting`: the recovery then leaves it to nova) or, once the
    recovery took it over (:meth:`take_over`), is dropped with one log line
    and a report row. Both sides hold one lock, so exactly one of them runs
    the request. Memory: one entry per request deferred at start-up.
    """

    def __init__(self, on_dropped):
        """:param on_dropped: ``f(method, instance, request_id)``, called
        for every late delivery dropped.
        """
        self._lock = threading.Lock()
        self._watched = set()
        self._started = set()
        self._taken_over = set()
        self._on_dropped = on_dropped
        self._wrapped = set()

    def watch(self, instance_uuid, request_id):
        """Start watching a deferred request."""
        if request_id:
            with self._lock:
                self._watched.add((instance_uuid, request_id))

    def starting(self, instance_uuid, request_id):
        """A delivery arrives: True to run it, False to drop it."""
        key = (instance_uuid, request_id)
        with self._lock:
            if key in self._taken_over:
                return False
            if key in self._watched:
                self._started.add(key)
            return True

    def take_over(self, instance_uuid, request_id):
        """The recovery is about to act for this request: True when no
        delivery of it has started (later ones are dropped from now on),
        False when nova already runs it.
        """
        key = (instance_uuid, request_id)
        with self._lock:
            if key in self._started:
                return False
            if request_id:
                self._taken_over.add(key)
            return True

    def wrap(self, manager):
        """Gate the queueable RPC methods of ``manager`` (once per
        manager instance; nova's classes are never patched).
        """
        if id(manager) in self._wrapped:
            return
        self._wrapped.add(id(manager))
        for name in QUEUEABLE_METHODS:
            method = getattr(manager, name, None)
            if method is not None:
                setattr(manager, name, self._gate(name, method))

    def _gate(self, name, method):
        try:
            signature = inspect.signature(method)
        except (TypeError, ValueError):
            signature = None
        manager = getattr(method, '__self__', None)
        if manager is not None and name not in vars(manager):
            # nova's own method: looked up on the class at each call, as
            # the dispatcher would without the gate.
            def method(*args, _cls=type(manager), **kwargs):
                return getattr(_cls, name)(manager, *args, **kwargs)

        @functools.wraps(method)
        def gated(context, *args, **kwargs):
            # oslo.messaging passes every argument by name; nova's own
            # callers may pass the instance by position.
            instance = kwargs.get('instance')
            if instance is None and args and signature is not None:
                try:
                    instance = signature.bind_partial(
                        context, *args, **kwargs).arguments.get('instance')
                except TypeError:
                    instance = None
            uuid = getattr(instance, 'uuid', None)
            request_id = getattr(context, 'request_id', None)
            if uuid and not self.starting(uuid, request_id):
                self._on_dropped(name, instance, request_id)
                return None
            return method(context, *args, **kwargs)
        return gated
