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
"""Serve one WSGI application with gunicorn: ``python serve.py BIND APP PROG``.

Run by the real deployment tier with the Python of the application's own
virtualenv (nova's for nova-api and placement, glance's, neutron's). BIND is
``127.0.0.1:PORT``, APP ``module:attribute`` (``nova.wsgi.osapi_compute:
application``...), PROG the program name the application's configuration
parser sees.

gunicorn's own command line cannot be used: neutron's and placement's WSGI
modules parse ``sys.argv[1:]`` with oslo.config when they load, and would
read gunicorn's options as theirs. Here ``sys.argv`` is ``[PROG]`` by the time
the worker imports the application. One worker, a few threads (gthread),
as a small devstack would run it under uwsgi.
"""

import importlib
import sys

from gunicorn.app import base


class Application(base.BaseApplication):

    def __init__(self, target, options):
        self.target = target
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        module, _, attribute = self.target.partition(':')
        return getattr(importlib.import_module(module), attribute)


def main():
    bind, target, prog = sys.argv[1:4]
    sys.argv = [prog]
    Application(target, {
        'bind': bind,
        'workers': 1,
        'worker_class': 'gthread',
        'threads': 4,
        # Loading an OpenStack API takes seconds on a loaded machine; the
        # worker must not be killed for it.
        'timeout': 300,
        'graceful_timeout': 5,
        'proc_name': prog,
        'accesslog': '-',
        'errorlog': '-',
        # gunicorn >= 25.1 opens a control socket at one path per user
        # ($HOME/.gunicorn/gunicorn.ctl): the tier's servers would share it.
        'control_socket_disable': True,
    }).run()


if __name__ == '__main__':
    main()
