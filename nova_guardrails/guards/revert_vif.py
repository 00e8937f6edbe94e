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
"""The ``revert_vif`` guard: never wait for a vif event that cannot come.

nova bugs 1450624, 1788403, 1832028 and 1952003: on a resize revert the
libvirt driver waits for network-vif-plugged for every port whose
``active`` flag is false (``LibvirtDriver._get_neutron_events``: port status
not ACTIVE). neutron sends that event only for a port bound to the host where
the vif is plugged. When the port is still bound to the other compute (the
binding update was lost or raced) and its status is DOWN, no event comes:
nova waits ``[DEFAULT] vif_plugging_timeout`` (300 s) and, with
``vif_plugging_is_fatal``, the server goes to ERROR with
VirtualInterfaceCreateException. nova 34 moves bindings in
``migrate_instance_finish`` before the driver runs, but never checks that a
port it is about to wait for is bound to this host.

nova 34's libvirt ``finish_migration`` (the resize itself) does not wait
(``vifs_already_plugged=True``), but a port left bound to the source host
there breaks the guest's network silently; the same rebinding applies.

Around the driver's ``finish_revert_migration`` and ``finish_migration``:
the ports the driver would wait for (its own selection) are read from
neutron in one call. A port bound to another host is rebound to this host
(``update_port`` ``binding:host_id``), and the rebind is verified, not
trusted: the binding is read back (a new read, else the update's answer).

* Bound here and ACTIVE: the driver does not wait for it (as nova decides
  from that status). Bound here, not ACTIVE: the event can now come and the
  driver waits for it (a real plug check).
* Still bound elsewhere (the update was acknowledged but lost, as nova's
  own was): its event cannot come, so the driver does not wait for it,
  under ``fix`` and ``skip-wait`` alike (``skip_wait``, outcome failed: the
  port stays bound to the other host; the row says where and how to fix
  it). Where the driver does not wait, it is reported (``not_rebound``).
* The binding cannot be read back: nova's behaviour (the driver waits).

A port whose rebind neutron refuses follows ``[guardrails]
revert_vif_policy`` where the driver would wait fatally: ``fix`` fails at
once with a fault naming the port, ``skip-wait`` does not wait for it.
SR-IOV ports (vnic_type other than normal) and ports with a resource request
(QoS) carry a host-specific binding profile: they are left to nova. If
neutron cannot be read, nova's behaviour is kept (logged).
"""

import inspect

import nova.conf
from nova import exception as nova_exception
from nova.network import neutron as neutron_api
from nova.virt import driver as nova_driver
from oslo_config import cfg
from oslo_log import log as logging

from nova_guardrails.guards import base
from nova_guardrails import report as report_mod

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

BINDING_HOST = 'binding:host_id'


class PortBindingElsewhere(nova_exception.NovaException):
    """A port the driver would wait for cannot be bound to this host."""

    msg_fmt = ('nova-guardrails revert_vif: failing now, not waiting '
               'vif_plugging_timeout: port %(port)s is bound to host '
               '%(bound)s, could not be bound to %(host)s, so its '
               'network-vif-plugged event cannot come (%(error)s). Fix the '
               'port binding in neutron, then retry. Instance %(instance)s '
               '(nova bug 1450624).')


def neutron_client(context):
    """The admin neutron client nova itself uses (``[neutron]`` options)."""
    return neutron_api.get_client(context, admin=True)


def _arguments(name, args, kwargs):
    """The driver method's arguments by name, as the manager passed them."""
    signature = inspect.signature(getattr(nova_driver.ComputeDriver, name))
    bound = signature.bind(None, *args, **kwargs)
    return bound.arguments


class RevertVifGuard(base.Guard):
    """Rebind ports bound elsewhere before the driver waits for them."""

    #: Options in ``[guardrails]``, registered when the guard is loaded.
    CONFIG_OPTS = [
        cfg.StrOpt(
            'revert_vif_policy',
            default='fix',
            choices=[
                ('fix', 'move the binding of a port bound to another host to '
                        'this host; when neutron refuses the update, fail the '
                        'revert at once with a fault naming the port, instead '
                        'of waiting [DEFAULT] vif_plugging_timeout; a port '
                        'still bound elsewhere after an acknowledged update '
                        '(the update lost) is never waited for'),
                ('skip-wait', 'move the binding as ``fix`` does; when that '
                              'fails, do not wait for that port\'s event and '
                              'go on'),
                ('off', 'the revert_vif guard does nothing'),
            ],
            help='``revert_vif`` guard: what to do before the driver of a '
                 'resize revert (or resize) waits for network-vif-plugged '
                 'events of ports that neutron has bound to another host. '
                 'Every decision is logged with the instance, the port, the '
                 'binding host found and the action.'),
    ]

    def validate(self):
        self.policy = self.conf.guardrails.revert_vif_policy

    def finish_revert_migration(self, manager, *args, call_next, **kwargs):
        self._prepare(manager, 'finish_revert_migration', args, kwargs)
        return call_next(*args, **kwargs)

    def finish_migration(self, manager, *args, call_next, **kwargs):
        self._prepare(manager, 'finish_migration', args, kwargs)
        return call_next(*args, **kwargs)

    def _record(self, instance, action, reason, outcome='done', error=None,
                **details):
        self.report.record_runtime(report_mod.Decision(
            guard=self.name, instance_uuid=instance.uuid, before=None,
            action=action, reason=reason, outcome=outcome, error=error,
            details=details or None))

    @staticmethod
    def _driver_waits(manager, method, arguments):
        """``(waits, fatal)``: does the driver wait for vif events here, as
        LibvirtDriver._create_guest_with_network decides, and does a timeout
        fail the operation? nova 34's libvirt finish_migration passes
        vifs_already_plugged=True: it never waits.
        """
        if method == 'finish_migration':
            return False, False
        waits = (CONF.libvirt.virt_type in ('kvm', 'qemu') and
                 arguments.get('power_on', True) and
                 CONF.vif_plugging_timeout > 0)
        return waits, waits and CONF.vif_plugging_is_fatal

    @staticmethod
    def _waited_ports(manager, network_info):
        """The port ids the driver would wait for (its own selection when
        it has one: LibvirtDriver._get_neutron_events).
        """
        events = getattr(manager.driver, '_get_neutron_events', None)
        if events is not None:
            return {tag for _, tag in events(network_info)}
        return {vif['id'] for vif in network_info
                if not vif.get('active', True)}

    def _prepare(self, manager, method, args, kwargs):
        if self.policy == 'off':
            return
        arguments = _arguments(method, args, kwargs)
        context = arguments['context']
        instance = arguments['instance']
        network_info = arguments['network_info'] or []
        waited_ids = self._waited_ports(manager, network_info)
        waited = [vif for vif in network_info if vif['id'] in waited_ids]
        if not waited:
            return
        waits, fatal = self._driver_waits(manager, method, arguments)
        host = manager.host
        try:
            client = neutron_client(context)
            ports = {p['id']: p for p in client.list_ports(
                device_id=instance.uuid)['ports']}
        except Exception as error:
            LOG.warning('guardrails %s: neutron could not be read before '
                        '%s; nova\'s behaviour is kept (the driver waits '
                        'for %d port(s)): %s', self.name, method,
                        len(waited), error, instance=instance)
            self._record(instance, 'nova', 'neutron could not be read: the '
                         'driver waits as nova alone would',
                         outcome='failed', method=method,
                         ports=[vif['id'] for vif in waited],
                         error='%s: %s' % (type(error).__name__, error))
            return
        rebound = []
        for vif in waited:
            port = ports.get(vif['id'])
            bound = port.get(BINDING_HOST) if port else None
            if port is None:
                self._record(instance, 'nova',
                             'not among the instance\'s ports in neutron: '
                             'the driver waits as nova alone would',
                             method=method, port=vif['id'])
                continue
            if bound == host:
                self._record(instance, 'wait',
                             'bound to this host: the event can come',
                             method=method, port=vif['id'],
                             binding_host=bound)
                continue
            vnic_type = port.get('binding:vnic_type', 'normal')
            if vnic_type != 'normal' or port.get('resource_request'):
                # Its binding profile (PCI slot, placement allocation) is
                # host specific: moving binding:host_id alone would be
                # wrong. Left to nova.
                self._record(instance, 'nova',
                             'bound to %s, but a port with vnic_type %s%s '
                             '(SR-IOV/QoS) is not rebound here: the driver '
                             'waits as nova alone would' % (
                                 bound, vnic_type,
                                 ' and a resource request'
                                 if port.get('resource_request') else ''),
                             method=method, port=vif['id'],
                             binding_host=bound)
                continue
            try:
                response = client.update_port(
                    vif['id'], {'port': {BINDING_HOST: host}})
            except Exception as error:
                self._unfixable(instance, vif, bound, host, method, error,
                                waits, fatal)
                continue
            rebound.append((vif, (response or {}).get('port') or {}))
        if not rebound:
            return
        # The rebind is verified, not trusted: an update neutron
        # acknowledges can be lost the same way nova's was (nova bug 1450624).
        try:
            now = {p['id']: p for p in client.list_ports(
                device_id=instance.uuid)['ports']}
            read_error = None
        except Exception as error:
            now = {}
            read_error = '%s: %s' % (type(error).__name__, error)
        for vif, response in rebound:
            port = now.get(vif['id']) or response
            bound_after = port.get(BINDING_HOST)
            status = port.get('status')
            details = dict(method=method, port=vif['id'],
                           binding_host=ports[vif['id']].get(BINDING_HOST),
                           binding_host_after=bound_after,
                           status_after=status)
            if bound_after is None:
                # Neither the update's answer nor a new read says where it
                # is bound: nova's behaviour (the driver waits).
                self._record(instance, 'rebind',
                             'rebound to this host, but the binding could '
                             'not be read back: the driver waits as nova '
                             'alone would', outcome='failed',
                             error=read_error, **details)
            elif bound_after != host:
                self._lost(instance, vif, host, waits, details)
            elif status == 'ACTIVE':
                # What nova decides from that status: nothing to wait for.
                vif['active'] = True
                self._record(instance, 'rebind', 'rebound to this host '
                             '(verified); neutron reports it ACTIVE',
                             **details)
            else:
                self._record(instance, 'rebind', 'rebound to this host '
                             '(verified); status %s: the event can come '
                             'now' % status, **details)

    def _lost(self, instance, vif, host, waits, details):
        """neutron acknowledged the rebind, but the port is still bound to
        another host: its network-vif-plugged event cannot come.
        """
        error = ('binding update acknowledged but not applied: neutron '
                 'still reports port %s bound to %s, not %s' % (
                     vif['id'], details['binding_host_after'], host))
        if not waits:
            self._record(instance, 'not_rebound',
                         'the rebind to this host did not take effect; the '
                         'driver does not wait here, so the operation goes '
                         'on; fix the port binding', outcome='failed',
                         error=error, **details)
            return
        # Never wait for an event that cannot come, whatever the policy
        # (fix or skip-wait): failing or waiting would not move the binding.
        vif['active'] = True
        self._record(instance, 'skip_wait',
                     'the rebind to this host did not take effect: not '
                     'waited for, the operation goes on; fix the port '
                     'binding (openstack port set --host %s %s)' % (
                         host, vif['id']),
                     outcome='failed', error=error, **details)

    def _unfixable(self, instance, vif, bound, host, method, error, waits,
                   fatal):
        details = dict(method=method, port=vif['id'], binding_host=bound,
                       error='%s: %s' % (type(error).__name__, error))
        if not waits:
            self._record(instance, 'not_rebound',
                         'bound to %s and could not be rebound; the driver '
                         'does not wait here, so the operation goes on'
                         % bound, outcome='failed', **details)
            return
        if self.policy == 'skip-wait' or not fatal:
            # Waiting cannot help: the event cannot come. A non-fatal wait
            # would only lose vif_plugging_timeout.
            vif['active'] = True
            # outcome failed: the port stays bound to another host.
            self._record(instance, 'skip_wait',
                         'bound to %s and could not be rebound: not waited '
                         'for (%s), the operation goes on; fix the port '
                         'binding' % (bound, '[guardrails] '
                                      'revert_vif_policy = skip-wait'
                                      if self.policy == 'skip-wait' else
                                      'vif_plugging_is_fatal is off'),
                         outcome='failed', **details)
            return
        self._record(instance, 'fail_fast',
                     'bound to %s and could not be rebound: failing now '
                     '([guardrails] revert_vif_policy = fix)' % bound,
                     outcome='refused', **details)
        raise PortBindingElsewhere(port=vif['id'], instance=instance.uuid,
                                   bound=bound, host=host, error=error)
