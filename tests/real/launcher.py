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
"""Test-only launcher of nova-compute: nova's ``main()`` with crash points.

``python launcher.py --config-file nova.conf`` is ``nova-compute --config-file
nova.conf`` (``nova.cmd.compute.main()``, the function nova's console script
runs), except that it first reads from its environment:

``GUARDRAILS_CRASH_AT``
    ``target:when[#n]`` items separated by ``;``: ``target`` is a dotted
    path to a function or method (``nova.virt.libvirt.guest.Guest.shutdown``,
    ``nova.virt.libvirt.driver.LibvirtDriver.finish_migration``), ``when``
    is ``before`` or ``after`` (the call), ``n`` the occurrence (default 1).
``GUARDRAILS_CRASH_AT_TASK_STATE``
    ``task_state:when[#n]`` items: around an ``Instance.save()`` that
    writes that task_state (``after``: once it returned, that is once
    nova-conductor wrote it to the database).
``GUARDRAILS_RAISE_AT``
    ``target[=Exception class path][#n]`` items: the call raises instead of
    running (fault injection; default ``RuntimeError``), from the n-th
    call on (default: every call).
``GUARDRAILS_HOLD_AT``
    ``target:when[#n]`` items: the thread that reaches the point blocks
    there for good (so that several operations can be caught in flight and
    the test kills the process from outside, with SIGKILL).
``GUARDRAILS_MEASURE_START``
    a file: when ``nova.service.Service.start`` returns (init_host done,
    the RPC server consuming), one JSON line is appended: seconds from
    ``GUARDRAILS_EXEC_AT`` (the caller's ``time.time()`` just before it
    started this process) to the call of ``init_host`` and to the return
    of ``Service.start``, the seconds ``init_host`` took (what
    ``Service.start`` calls: the guards' wrapper when guarded), and the
    round trips to nova-conductor (``ConductorAPI``'s
    ``object_class_action_versions``, ``object_action``,
    ``object_backport_versions``: remotable calls of
    nova's objects) made in this process before ``init_host``, during it
    and up to the return of ``Service.start``. Measurement only: nothing
    else changes.
``GUARDRAILS_CRASH_MARKER``
    a file: one line is appended (unbuffered) when a crash point or a fault
    is reached, before the kill, so the test knows where the process died.

Reaching a crash point does ``os.kill(os.getpid(), signal.SIGKILL)``: a real
kill -9, no ``finally``, no ``__exit__``, no message to anyone. The patches
are attributes set on nova's classes in this process only; nova's files are
not touched. Everything else is nova-compute as an operator runs it.
"""

import functools
import importlib
import os
import signal
import sys
import threading

# nova-compute's own start: its module applies nova's monkey patching
# (threading mode) on import, before any other nova module is imported.
from nova.cmd import compute  # noqa: E402  (must come first)

_LOCK = threading.Lock()


def _marker(text):
    path = os.environ.get('GUARDRAILS_CRASH_MARKER')
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (text + '\n').encode())
    finally:
        os.close(fd)


def crash(reason):
    """kill -9 of this process, after one line in the marker file."""
    _marker('crash %s pid %d' % (reason, os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)


def resolve(path):
    """(owner, attribute name, current value) of a dotted ``path``: the
    longest importable module prefix, then attributes.
    """
    parts = path.split('.')
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module('.'.join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1], getattr(owner, parts[-1])
    raise ValueError('cannot import any module of %r' % path)


def _occurrence(item):
    item, _, count = item.partition('#')
    return item.strip(), int(count) if count else None


def _items(variable):
    return [i.strip() for i in os.environ.get(variable, '').split(';')
            if i.strip()]


def _patch(owner, name, original, wrapper):
    # A function of a class is wrapped as a function (it binds as a method);
    # staticmethod/classmethod objects keep their kind.
    raw = owner.__dict__.get(name, original) if isinstance(owner, type) \
        else original
    if isinstance(raw, staticmethod):
        setattr(owner, name, staticmethod(wrapper))
    elif isinstance(raw, classmethod):
        setattr(owner, name, classmethod(wrapper))
    else:
        setattr(owner, name, wrapper)


def hold(reason):
    """Block this thread for good, after one line in the marker file."""
    _marker('hold %s pid %d' % (reason, os.getpid()))
    threading.Event().wait()


def install_crash_at(spec, action=crash, variable='GUARDRAILS_CRASH_AT'):
    target, count = _occurrence(spec)
    target, _, when = target.rpartition(':')
    if when not in ('before', 'after'):
        raise ValueError('%s %r: say :before or :after' % (variable, spec))
    owner, name, original = resolve(target)
    function = getattr(original, '__func__', original)
    count = count or 1
    calls = [0]

    def reached():
        with _LOCK:
            calls[0] += 1
            return calls[0] == count

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if when == 'before' and reached():
            action('before %s' % target)
        result = function(*args, **kwargs)
        if when == 'after' and reached():
            action('after %s' % target)
        return result

    _patch(owner, name, original, wrapper)


def install_crash_at_task_state(spec):
    from nova import objects
    objects.register_all()
    from nova.objects import instance as instance_obj
    item, count = _occurrence(spec)
    state, _, when = item.rpartition(':')
    if when not in ('before', 'after'):
        raise ValueError('GUARDRAILS_CRASH_AT_TASK_STATE %r: say :before or '
                         ':after' % spec)
    state = None if state in ('None', '') else state
    count = count or 1
    calls = [0]
    original = instance_obj.Instance.save

    def writes(instance):
        return ('task_state' in instance.obj_what_changed() and
                instance.task_state == state)

    def reached():
        with _LOCK:
            calls[0] += 1
            return calls[0] == count

    @functools.wraps(original)
    def save(self, *args, **kwargs):
        hit = writes(self)
        if hit and when == 'before' and reached():
            crash('before task_state %s' % state)
        result = original(self, *args, **kwargs)
        if hit and when == 'after' and reached():
            crash('after task_state %s' % state)
        return result

    instance_obj.Instance.save = save


def install_raise_at(spec):
    item, count = _occurrence(spec)
    target, _, error = item.partition('=')
    owner, name, original = resolve(target)
    function = getattr(original, '__func__', original)
    if error:
        module, _, cls = error.rpartition('.')
        error_class = getattr(importlib.import_module(module or 'builtins'),
                              cls)
    else:
        error_class = RuntimeError
    first = count or 1
    calls = [0]

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with _LOCK:
            calls[0] += 1
            fire = calls[0] >= first
        if fire:
            _marker('raise %s at %s pid %d' % (
                error_class.__name__, target, os.getpid()))
            raise error_class('fault injected by the real tier at %s'
                              % target)
        return function(*args, **kwargs)

    _patch(owner, name, original, wrapper)


def install_measure_start(path):
    import json
    import time

    from nova.conductor import rpcapi as conductor_rpcapi
    from nova import service

    exec_at = float(os.environ.get('GUARDRAILS_EXEC_AT') or time.time())
    calls = [0]
    for name in ('object_class_action_versions', 'object_action',
                 'object_backport_versions'):
        original = getattr(conductor_rpcapi.ConductorAPI, name)

        def counted(*args, _original=original, **kwargs):
            with _LOCK:
                calls[0] += 1
            return _original(*args, **kwargs)
        setattr(conductor_rpcapi.ConductorAPI, name,
                functools.wraps(original)(counted))
    start = service.Service.start

    @functools.wraps(start)
    def measured_start(self, *args, **kwargs):
        times = {}
        init_host = self.manager.init_host

        @functools.wraps(init_host)
        def timed_init_host(*a, **kw):
            times['before'] = calls[0]
            times['init_host_at'] = time.time() - exec_at
            began = time.monotonic()
            try:
                return init_host(*a, **kw)
            finally:
                times['init_host_seconds'] = time.monotonic() - began
                times['during'] = calls[0] - times['before']
        self.manager.init_host = timed_init_host
        try:
            return start(self, *args, **kwargs)
        finally:
            self.manager.init_host = init_host
            record = {
                'binary': self.binary,
                'started_seconds': time.time() - exec_at,
                'init_host_at_seconds': times.get('init_host_at'),
                'init_host_seconds': times.get('init_host_seconds'),
                'conductor_calls_before_init_host': times.get('before'),
                'conductor_calls_init_host': times.get('during'),
                'conductor_calls_until_started': calls[0],
            }
            with open(path, 'a') as f:
                f.write(json.dumps(record) + '\n')
    service.Service.start = measured_start


def install_from_environment():
    if os.environ.get('GUARDRAILS_MEASURE_START'):
        install_measure_start(os.environ['GUARDRAILS_MEASURE_START'])
    for spec in _items('GUARDRAILS_CRASH_AT'):
        install_crash_at(spec)
    for spec in _items('GUARDRAILS_CRASH_AT_TASK_STATE'):
        install_crash_at_task_state(spec)
    for spec in _items('GUARDRAILS_RAISE_AT'):
        install_raise_at(spec)
    for spec in _items('GUARDRAILS_HOLD_AT'):
        install_crash_at(spec, action=hold, variable='GUARDRAILS_HOLD_AT')


def main():
    install_from_environment()
    sys.argv[0] = 'nova-compute'
    return compute.main()


if __name__ == '__main__':
    sys.exit(main())
