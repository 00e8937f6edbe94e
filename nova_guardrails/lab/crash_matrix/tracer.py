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
"""How the crash matrix finds crash points, and crashes at one.

A crash point (:class:`CrashPoint`) is an event of one nova-compute during
an operation, counted per ``(kind, name, host)`` from 1:

* :data:`TASK_STATE`: a save of ``Instance.task_state`` made from a
  ``ComputeManager`` method (``nova.objects.instance.Instance.save``,
  wrapped; ``name`` is the new task_state, None included);
* :data:`HYPERVISOR`: a fakelibvirt call that changes a guest
  (:data:`DOMAIN_EFFECTS` on ``Domain``, :data:`CONNECTION_EFFECTS` on
  ``Connection`` of ``nova.tests.fixtures.libvirt``; ``name`` is the
  method), after the call returned;
* :data:`LATE`: not an event but a cell kind: the operation's request held
  in the queue across a restart (see
  :mod:`nova_guardrails.lab.crash_matrix.cells`).

The host of an event is that of the ``ComputeManager`` on the calling
thread's stack (:func:`compute_host_of_caller`), else the host whose
fakelibvirt connection the guest belongs to; events of nova-api, the
conductor or the test itself have no host and are not counted.

:class:`Tracer` records every crash point of a clean run (``target``
None), or raises :class:`~nova_guardrails.lab.harness.ComputeCrash` right
after the ``target`` event, in the thread that made it.
"""

import dataclasses
import inspect
import threading

import fixtures

#: Crash point kinds.
TASK_STATE = 'task_state'
HYPERVISOR = 'hypervisor'
#: Not a crash: the operation's request is cast while its nova-compute is
#: down (held in the queue across a restart) and delivered after the
#: queued grace period, when the recovery has already decided the instance.
LATE = 'late delivery'

FAKELIBVIRT = 'nova.tests.fixtures.libvirt'
#: fakelibvirt calls that change a guest on the hypervisor.
DOMAIN_EFFECTS = ('createWithFlags', 'destroy', 'shutdown', 'suspend',
                  'resume', 'managedSave', 'reset', 'undefine',
                  'undefineFlags', 'snapshotCreateXML')
CONNECTION_EFFECTS = ('defineXML', 'createXML')


@dataclasses.dataclass(frozen=True)
class CrashPoint:
    """Where nova-compute dies: right after the ``occurrence``-th (from 1)
    ``kind``/``name`` event on ``host`` during the operation.
    """

    kind: str
    name: str
    host: str
    occurrence: int

    def label(self):
        if self.kind == LATE:
            return 'request queued across a restart of %s, delivered ' \
                'late' % self.host
        what = ('task_state -> %s' % (self.name or 'None')
                if self.kind == TASK_STATE else 'after %s' % self.name)
        suffix = ' #%d' % self.occurrence if self.occurrence > 1 else ''
        return '%s on %s%s' % (what, self.host, suffix)


def compute_host_of_caller():
    """The host (``str``, nova's ``CONF.host`` of that service) of the
    ComputeManager on the calling thread's stack, or None (nova-api,
    conductor or the test itself).
    """
    from nova.compute import manager as compute_manager
    frame = inspect.currentframe()
    try:
        while frame is not None:
            candidate = frame.f_locals.get('self')
            if isinstance(candidate, compute_manager.ComputeManager):
                return candidate.host
            frame = frame.f_back
    finally:
        del frame
    return None


class Tracer(fixtures.Fixture):
    """Records crash points, or crashes at one.

    :param test: the GuardrailsTestBase.
    :param target: a :class:`CrashPoint` to crash at, or None to record.
    :ivar points: ``[CrashPoint]`` recorded, in order (``target`` None).
    :ivar counts: ``{(kind, name, host): n}`` of the events seen armed.
    :ivar armed: events count only while True (the operation's steps, not
        its set-up).
    :ivar crashed: a ``threading.Event``, set when the crash was raised.
    """

    def __init__(self, test, target=None):
        super().__init__()
        self.test = test
        self.target = target
        self.points = []
        self.counts = {}
        self.armed = False
        self.crashed = threading.Event()
        self.lock = threading.Lock()
        self._quiet = threading.local()
        self.deferred_to = None

    def quiet(self):
        """A context in which this thread's side effects are not events."""
        tracer = self

        class Quiet:
            def __enter__(self):
                tracer._quiet.on = True

            def __exit__(self, *args):
                tracer._quiet.on = False
        return Quiet()

    def host_of_connection(self, connection):
        """The host (``str``) whose nova-compute's driver holds the
        fakelibvirt ``connection``; else the ``_guardrails_host`` the
        operation's set-up marked on it (a host whose service is stopped);
        else None.
        """
        for host, compute in list(self.test.computes.items()):
            if compute.driver._host.get_connection() is connection:
                return host
        return getattr(connection, '_guardrails_host', None)

    def event(self, kind, name, host, defer=False):
        """Count the event; crash if it is the target.

        Called by the patched methods, and by an operation's own stub of a
        hypervisor step (the live migration's). Does nothing unless
        :attr:`armed`, for a None ``host`` or in a :meth:`quiet` context.

        :param kind: :data:`TASK_STATE` or :data:`HYPERVISOR`.
        :param name: the new task_state or the fakelibvirt method.
        :param host: the nova-compute the event belongs to, or None.
        :raises nova_guardrails.lab.harness.ComputeCrash: this is the target
            event (or, deferred, the next event of its host).

        :param defer: the event happens in a thread nova waits on without a
            timeout (the live migration's operation thread): killing that
            thread alone would hang the service, where a kill -9 takes the
            whole process. The crash is raised at the next event of the
            same host instead, in whichever thread makes it.
        """
        if not self.armed or host is None or getattr(self._quiet, 'on',
                                                     False):
            return
        with self.lock:
            if self.deferred_to == host and not self.crashed.is_set():
                self.crashed.set()
                deferred = True
            else:
                deferred = False
                key = (kind, name, host)
                self.counts[key] = self.counts.get(key, 0) + 1
                point = CrashPoint(kind, name, host, self.counts[key])
                if self.target is None:
                    self.points.append(point)
                    return
                if point != self.target or self.crashed.is_set():
                    return
                if defer:
                    self.deferred_to = host
                    return
                self.crashed.set()
        if deferred:
            point = self.target
        from nova_guardrails.lab import harness
        raise harness.ComputeCrash('crash at %s' % point.label())

    def _setUp(self):
        from nova.objects import instance as instance_obj
        tracer = self
        save = instance_obj.Instance.save

        def traced_save(instance, *args, **kwargs):
            changed = 'task_state' in instance.obj_what_changed()
            new = instance.task_state if changed else None
            save(instance, *args, **kwargs)
            if changed:
                tracer.event(TASK_STATE, new, compute_host_of_caller())
        self.useFixture(fixtures.MonkeyPatch(
            'nova.objects.instance.Instance.save', traced_save))

        def wrap(cls_name, method, host_of):
            original = getattr(getattr(fakelibvirt(), cls_name), method)

            def effect(obj, *args, **kwargs):
                result = original(obj, *args, **kwargs)
                # The nova-compute whose thread made the call dies (a live
                # migration's source creates the guest on the destination).
                tracer.event(HYPERVISOR, method,
                             compute_host_of_caller() or host_of(obj))
                return result
            self.useFixture(fixtures.MonkeyPatch(
                '%s.%s.%s' % (FAKELIBVIRT, cls_name, method), effect))
        for method in DOMAIN_EFFECTS:
            wrap('Domain', method,
                 lambda dom: self.host_of_connection(dom._connection))
        for method in CONNECTION_EFFECTS:
            wrap('Connection', method, self.host_of_connection)


def fakelibvirt():
    """nova's fakelibvirt module (``nova.tests.fixtures.libvirt``),
    imported on first use (nova's test fixtures are the lab extra).
    """
    from nova.tests.fixtures import libvirt
    return libvirt
