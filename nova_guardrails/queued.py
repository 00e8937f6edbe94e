"""Interrupted here, or still queued? (seed 001's hard part)

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

:func:`latest_actions` loads what start-up needs in two queries for all the
instances of the host, not one per instance.
"""

import dataclasses

from nova.compute import task_states as ts

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


def latest_actions(context, instance_uuids):
    """``{instance_uuid: LatestAction}`` for the instances that have one.

    Two queries on the cell database whatever the number of instances: the
    latest non-deleted action of each instance, then the ``compute_*``
    events of those actions (nova's ``instance_actions`` and
    ``instance_actions_events`` tables, through nova's own models and
    database context manager).

    :param context: a nova RequestContext targeted at the cell.
    :param instance_uuids: iterable of instance uuids.
    """
    from nova.db.main import api as main_db_api
    from nova.db.main import models
    import sqlalchemy as sa

    uuids = sorted(set(instance_uuids))
    if not uuids:
        return {}
    action = models.InstanceAction
    event = models.InstanceActionEvent
    with main_db_api.get_context_manager(context).reader.using(context) as s:
        newest = (sa.select(sa.func.max(action.id))
                  .where(action.instance_uuid.in_(uuids),
                         action.deleted == 0)
                  .group_by(action.instance_uuid))
        actions = s.execute(
            sa.select(action.id, action.instance_uuid, action.action,
                      action.request_id)
            .where(action.id.in_(newest))).all()
        ids = [row.id for row in actions]
        events = {}
        if ids:
            for row in s.execute(
                    sa.select(event.action_id, event.event, event.host,
                              event.finish_time)
                    .where(event.action_id.in_(ids), event.deleted == 0,
                           event.event.like('compute\\_%', escape='\\'))
                    .order_by(event.id)):
                events.setdefault(row.action_id, []).append(
                    (row.event, row.host, row.finish_time is None))
    return {row.instance_uuid: LatestAction(
        row.id, row.action, row.request_id,
        tuple(name for name, _, _ in events.get(row.id, ())),
        tuple((name, host) for name, host, _ in events.get(row.id, ())),
        tuple((name, host) for name, host, open_ in events.get(row.id, ())
              if open_))
        for row in actions}


def classify(task_state, latest, host=None):
    """``(verdict, why)`` for an instance in ``task_state``.

    :param task_state: the instance's task_state (not None).
    :param latest: its :class:`LatestAction` or None.
    :param host: this compute host: only its own compute events mean the
        request reached it (a resize's or live migration's first hop runs
        on the other host). None: any host's.
    :returns: ``(INTERRUPTED | QUEUED | UNKNOWN, one-line reason)``.
    """
    if task_state not in API_SET_TASK_STATES:
        return INTERRUPTED, 'task_state set by nova-compute itself'
    if latest is None:
        return UNKNOWN, ('no instance action recorded: treated as '
                         'interrupted, as nova does')
    started = (latest.started_on(host) if host is not None else
               latest.compute_events)
    if started:
        return INTERRUPTED, ('%s started on %s (%s)' % (
            latest.action, host or 'a compute', ', '.join(started)))
    return QUEUED, ('%s requested (request %s) but %s did not start it: '
                    'still queued' % (latest.action, latest.request_id,
                                      host or 'no compute'))


def unfinished_here(context, host, event_name):
    """Instance uuids with a ``event_name`` event started on ``host`` and
    never finished (the nova-compute of ``host`` died in it). One query.

    :param context: a nova RequestContext targeted at the cell.
    :param host: the compute host recorded on the event.
    :param event_name: e.g. ``'compute_unshelve_instance'``.
    """
    from nova.db.main import api as main_db_api
    from nova.db.main import models
    import sqlalchemy as sa

    action = models.InstanceAction
    event = models.InstanceActionEvent
    with main_db_api.get_context_manager(context).reader.using(context) as s:
        rows = s.execute(
            sa.select(action.instance_uuid).join(
                event, event.action_id == action.id)
            .where(event.event == event_name, event.host == host,
                   event.finish_time.is_(None), event.deleted == 0,
                   action.deleted == 0)).all()
    return sorted({row.instance_uuid for row in rows})
