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
"""nova's own functional tests of evacuation and compute restart, with every
guard enabled.

Each class below is one of nova 34's test classes, from the nova wheel,
unchanged but for the nova.conf of its computes: ``[DEFAULT] compute_driver
= guardrails.GuardrailsDriver`` and ``[guardrails] driver`` = the driver the
nova test chose (``libvirt.LibvirtDriver``, ``fake.SmallFakeDriver``, ...),
with ``enabled_guards = recovery_table, host_identity, revert_vif,
rbd_root_disk``, loaded as nova.conf text when the test starts its first
compute. A test where a guard deliberately differs from nova is an expected
failure whose reason names the guard and why.

nova's generic restart helper (``nova.test.TestCase.restart_compute_service``,
used with its fake drivers) hands the old driver object to the new
ComputeManager, because the fake driver holds the hypervisor state. A real
restart builds a new driver, so here a new GuardrailsDriver is built around
that same real driver, bound to the new manager.
"""

import importlib
import unittest
from unittest import mock

import fixtures
import nova.conf
from nova.tests.functional.compute import test_init_host
from nova.tests.functional.libvirt import test_evacuate
from nova.tests.functional.regressions import test_bug_1764556
from nova.tests.functional.regressions import test_bug_1794996
from nova.tests.functional.regressions import test_bug_2085975

from nova_guardrails import driver as guardrails_driver
from nova_guardrails.lab import harness

CONF = nova.conf.CONF


def _nova_regression_test(name):
    """nova's regression test module ``name``, or None on a nova release
    that does not ship it (a test added with the fix of a newer release):
    the guarded copy of its classes is then not defined at all.
    """
    try:
        return importlib.import_module(
            'nova.tests.functional.regressions.' + name)
    except ImportError:
        return None


test_bug_2139351 = _nova_regression_test('test_bug_2139351')
test_bug_2140537 = _nova_regression_test('test_bug_2140537')
test_bug_2152697 = _nova_regression_test('test_bug_2152697')
test_bug_2154495 = _nova_regression_test('test_bug_2154495')

ALL_GUARDS = 'recovery_table, host_identity, revert_vif, rbd_root_disk'


class Guarded:
    """Mixin: the nova test's computes run nova-guardrails, every guard on."""

    def setUp(self):
        self._guarded = False
        # nova's API fixture looks for api-paste.ini under site-packages.
        self.flags(api_paste_config=harness.api_paste_config(), group='wsgi')
        super().setUp()

    def _clear_attrs(self):
        # nova's TestCase deletes public instance attributes at cleanup;
        # pytest binds the test method as one and removes it itself (as
        # harness.GuardrailsTestBase does).
        method = self.__dict__.pop(self._testMethodName, None)
        super()._clear_attrs()
        if method is not None:
            self.__dict__[self._testMethodName] = method

    def guarded_nova_conf(self, real_driver):
        return ('[DEFAULT]\n'
                'compute_driver = guardrails.GuardrailsDriver\n'
                '[guardrails]\n'
                'driver = %s\n'
                'enabled_guards = %s\n'
                'report_path = %s\n' % (
                    real_driver, ALL_GUARDS,
                    self.useFixture(fixtures.TempDir()).path +
                    '/report.json'))

    def start_service(self, name, host=None, **kwargs):
        if name == 'compute' and not self._guarded:
            self._guarded = True
            real = CONF.compute_driver
            self.assertNotIn('guardrails', real.lower())
            # The nova test set compute_driver as an override (flags); the
            # guarded value comes from nova.conf text, as on a real node.
            CONF.clear_override('compute_driver')
            harness.GuardrailsTestBase.use_nova_conf(
                self, self.guarded_nova_conf(real))
        return super().start_service(name, host=host, **kwargs)

    def restart_compute_service(self, compute, *args, **kwargs):
        if isinstance(compute, str) or not kwargs.get(
                'keep_hypervisor_state', True):
            # The libvirt base builds a new driver over the same fake
            # connection: nova-guardrails is loaded anew from nova.conf.
            return super().restart_compute_service(compute, *args, **kwargs)
        wrapper = compute.manager.driver
        self.assertIsInstance(wrapper, guardrails_driver.GuardrailsDriver)
        real = wrapper._guardrails_driver
        compute.stop()
        cell_name = self.host_mappings[compute.host].cell_mapping.name

        def load_compute_driver(virtapi, compute_driver=None):
            with mock.patch.object(guardrails_driver, '_build_real_driver',
                                   autospec=True, return_value=real):
                return guardrails_driver.GuardrailsDriver(virtapi)
        with mock.patch('nova.virt.driver.load_compute_driver',
                        autospec=True, side_effect=load_compute_driver):
            return self.start_service('compute', host=compute.host,
                                      cell_name=cell_name)


# Evacuation ------------------------------------------------------------------

class TestBug1794996(
        Guarded,
        test_bug_1794996.TestEvacuateDeleteServerRestartOriginalCompute):
    """Evacuated, then deleted; the source restarts (fake.SmallFakeDriver).
    host_identity once refused this start-up; it must not.
    """


class TestBug2085975(
        Guarded, test_bug_2085975.TestComputeStartupInProgressEvacuation):

    @unittest.expectedFailure
    def test_compute_startup_evacuation_in_progress(self):
        """host_identity, deliberately: the source starts while the
        evacuation is still running on the destination. nova destroys the
        source's guest at start-up and asks the destination, there and
        then, whether the disks are shared. host_identity keeps the guest
        (powered off, disks untouched) until the evacuation is over, and
        only then destroys it as nova would, asking the destination at that
        moment (tests/functional/test_host_identity_evacuation.py
        test_finished_evacuation_settles_the_copy). This test asserts right
        after the restart, before the evacuation can finish, so the call it
        waits for has not happened yet.
        """
        super().test_compute_startup_evacuation_in_progress()


class LibvirtFlatEvacuateTest(Guarded, test_evacuate.LibvirtFlatEvacuateTest):
    pass


class LibvirtQcowEvacuateTest(Guarded, test_evacuate.LibvirtQcowEvacuateTest):
    pass


class LibvirtRbdEvacuateTest(Guarded, test_evacuate.LibvirtRbdEvacuateTest):
    pass


class LibvirtLVMEvacuateTest(Guarded, test_evacuate.LibvirtLVMEvacuateTest):
    pass


# Compute restart ------------------------------------------------------------

class ComputeManagerInitHostTestCase(
        Guarded, test_init_host.ComputeManagerInitHostTestCase):

    @unittest.expectedFailure
    def test_migrate_disk_and_power_off_crash_finish_revert_migration(self):
        """recovery_table, deliberately: a cold migration interrupted on
        its source (resize_migrating) is reverted by the guard itself
        (``revert_resize``), not by nova's _init_instance, so nova's log
        line "Instance found in migrating state during startup" this test
        looks for is not written; and the leftovers this test asserts as
        nova bug 1836369 (migration still "migrating", migration context
        and new flavor left on the instance, the allocation left on the
        destination, none on the source) are what the guard's revert
        cleans up (tests/functional/test_recovery_resize.py).
        """
        super().test_migrate_disk_and_power_off_crash_finish_revert_migration()


class TestComputeRestartInstanceStuckInBuild(
        Guarded, test_init_host.TestComputeRestartInstanceStuckInBuild):
    pass


class InstanceListWithDeletedServicesTestCase(
        Guarded, test_bug_1764556.InstanceListWithDeletedServicesTestCase):
    pass


if test_bug_2139351 is not None:
    class TestLiveMigrationIOThreadPinning(
            Guarded, test_bug_2139351.TestLiveMigrationIOThreadPinning):
        pass


if test_bug_2140537 is not None:
    class TestIOThreadPinningPinnedCPU(
            Guarded, test_bug_2140537.TestIOThreadPinningPinnedCPU):
        pass


if test_bug_2152697 is not None:
    class TestLiveMigrationIOThreadPinningPreExistingInstance(
            Guarded,
            test_bug_2152697.
            TestLiveMigrationIOThreadPinningPreExistingInstance):
        pass


if test_bug_2154495 is not None:
    class FakeDriverVTPMStartupValidationTest(
            Guarded, test_bug_2154495.FakeDriverVTPMStartupValidationTest):
        pass

    class LibvirtVTPMStartupValidationTest(
            Guarded, test_bug_2154495.LibvirtVTPMStartupValidationTest):
        pass
