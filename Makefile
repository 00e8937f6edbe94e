# nova-guardrails: `make lab` runs the lab, `make test` runs every test.
# Both create .venv idempotently: nova 34.0.0 and the test dependencies are
# pinned by requirements/constraints-nova-34.0.0.txt, and nova-guardrails is
# installed the way an operator installs it (a wheel, not editable).

# Every maintained nova release is tested (the newest of each series,
# 2024.1 to 2026.2): `make test NOVA=29.4.0` runs on nova 29.4.0, pinned by
# requirements/constraints-nova-29.4.0.txt, in .venv-nova-29.4.0; without
# NOVA, on the newest release in .venv. `make test` runs the real deployment
# tier on the newest release only (`make test-real NOVA=...` runs it on
# another). TESTS narrows the in-process suite, e.g.
# `make test NOVA=31.3.1 TESTS="unit functional/test_driver_loading.py"`.

PYTHON ?= python3
NOVA_RELEASES := 29.4.0 30.3.0 31.3.1 32.2.1 33.0.2 34.0.0
NOVA_NEWEST := $(lastword $(NOVA_RELEASES))
NOVA ?= $(NOVA_NEWEST)
ifeq ($(NOVA),$(NOVA_NEWEST))
VENV ?= .venv
REAL_TIER := real-packages real-venvs
else
VENV ?= .venv-nova-$(NOVA)
REAL_TIER :=
endif
CONSTRAINTS ?= requirements/constraints-nova-$(NOVA).txt
ifeq ($(wildcard $(CONSTRAINTS)),)
$(error NOVA=$(NOVA): there is no $(CONSTRAINTS); tested releases: $(NOVA_RELEASES))
endif
TESTS ?= .
# Extra pytest arguments for the in-process tier (e.g. -x, -k NAME).
PYTEST_ARGS ?=
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.deps-installed

.PHONY: venv install ceph lab crash-matrix bench bench-real test test-ceph \
	docs sample clean pep8 real-packages real-venvs test-real releases

venv: $(STAMP)

$(STAMP): $(CONSTRAINTS) requirements.txt test-requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 is required, $(PYTHON) is %d.%d" % sys.version_info[:2] or 0)'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(CONSTRAINTS) -r requirements.txt -r test-requirements.txt
	touch $@

# Reinstalled at every run so the tests and the lab see this tree; --no-deps
# and --no-build-isolation keep it to the pinned environment (pbr from it).
# build/ goes first: setuptools copies into it and never removes a module
# the tree no longer has (a package that replaced a module would ship both).
install: venv
	rm -rf build
	$(PIP) install -q --no-deps --no-build-isolation --force-reinstall .

# Ceph for the rbd tests: Debian's packages, installed when missing (CI runs
# as root), and their Python bindings (built for Debian's python3.11) linked
# into the virtualenv. Without root and without Ceph, the Ceph tests skip,
# except under CI=true, where they fail.
CEPH_PACKAGES := ceph-mon ceph-osd ceph-common python3-rados python3-rbd
CEPH_BINDINGS := /usr/lib/python3/dist-packages

ceph: venv
	@if ! command -v ceph-osd >/dev/null || ! command -v rbd >/dev/null || \
	    ! ls $(CEPH_BINDINGS)/rbd.cpython-311-*.so >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Ceph: $(CEPH_PACKAGES)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $(CEPH_PACKAGES) \
	      >/dev/null; \
	  else \
	    echo "Ceph is missing; as root: apt-get install $(CEPH_PACKAGES)"; \
	  fi; \
	fi
	@site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	for so in $(CEPH_BINDINGS)/rados.cpython-311-*.so $(CEPH_BINDINGS)/rbd.cpython-311-*.so; do \
	  if [ -e "$$so" ]; then ln -sf "$$so" "$$site/"; fi; \
	done

lab: install ceph
	$(VENV)/bin/nova-guardrails lab

# The full crash matrix (every operation, nova alone and guarded); its
# result is committed as doc/crash-matrix.md and doc/crash-matrix.json.
# make test runs its fast subset.
crash-matrix: install
	$(VENV)/bin/nova-guardrails crash-matrix --jobs 3 \
	  --output doc/crash-matrix.md --json doc/crash-matrix.json

# nova-compute start-up (init_host), nova alone vs guarded, at 10, 100 and
# 1,000 instances (doc/source/benchmark.rst); BENCH_ARGS adds options, e.g.
# BENCH_ARGS="--instances 10 100 --restarts 3".
bench: install
	$(VENV)/bin/nova-guardrails bench $(BENCH_ARGS)

# The style checks: flake8 with OpenStack's hacking rules ([flake8] in
# tox.ini), in a virtualenv of their own pinned by requirements/pep8.txt.
PEP8_VENV := .venv-pep8
$(PEP8_VENV)/.deps-installed: requirements/pep8.txt
	test -x $(PEP8_VENV)/bin/python || $(PYTHON) -m venv $(PEP8_VENV)
	$(PEP8_VENV)/bin/python -m pip --disable-pip-version-check install -q -r requirements/pep8.txt
	touch $@

pep8: $(PEP8_VENV)/.deps-installed
	$(PEP8_VENV)/bin/flake8

# Every test: the style checks, the in-process suite ($(TESTS) under
# tests/), then, on the newest release, the real deployment tier
# (tests/real); each runs even when one before failed, the exit status is
# the first failure's.
test: install ceph $(REAL_TIER) $(PEP8_VENV)/.deps-installed
	@status=0; \
	$(PEP8_VENV)/bin/flake8 && echo "pep8: flake8 with hacking, clean" \
	  || { status=$$?; echo "pep8: flake8 found problems (above)"; }; \
	(cd tests && ../$(PY) -m pytest -q -ra --continue-on-collection-errors $(PYTEST_ARGS) --ignore=real $(TESTS)) \
	  || { rc=$$?; [ "$$status" != 0 ] || status=$$rc; }; \
	if [ -n "$(REAL_TIER)" ]; then \
	  (cd tests && ../$(PY) -m pytest -q -ra $(REAL_PYTEST_ARGS) real) \
	    || { rc=$$?; [ "$$status" != 0 ] || status=$$rc; }; \
	else \
	  echo "nova $(NOVA): make test runs the real deployment tier on nova $(NOVA_NEWEST) only"; \
	fi; \
	exit $$status

# The tested nova releases, oldest first (.ci/run reads them).
releases:
	@echo $(NOVA_RELEASES)

# Only the tests that run against the throwaway Ceph cluster.
test-ceph: install ceph
	cd tests && ../$(PY) -m pytest -q -ra functional/test_rbd_root_disk.py \
	  functional/regressions/test_bug_1419785_rbd_evacuation.py

# The documentation; a Sphinx warning fails the build.
docs: install
	$(VENV)/bin/sphinx-build -E -W --keep-going -q -b html doc/source doc/build/html

# Regenerate etc/nova-guardrails.conf.sample (a unit test checks it).
sample: install
	$(VENV)/bin/oslo-config-generator --config-file etc/oslo-config-generator/nova-guardrails.conf

# The real deployment tier (tests/real, doc/source/real-tier.rst): MariaDB,
# RabbitMQ, Ceph, two libvirtd, placement, glance, neutron and nova as real
# processes on loopback. Debian packages from bindep.txt (profile test),
# installed when missing (as root); the libvirt-qemu user and group libvirtd
# looks up even with user = "root" in qemu.conf (libvirt-daemon-system, left
# out, would create them); pip packages in nova's virtualenv; glance and
# neutron each in a virtualenv of their own, all pinned by $(CONSTRAINTS).
REAL_BINDEP := bindep.txt
REAL_STAMP := $(VENV)/.real-tier-installed
REAL_VENVS := $(VENV)/real-tier
REAL_GLANCE := $(REAL_VENVS)/glance
REAL_NEUTRON := $(REAL_VENVS)/neutron
# glance and neutron are services of their own: the 2026.2 series, whatever
# nova is under test.
REAL_SERVICES_CONSTRAINTS ?= requirements/constraints-nova-$(NOVA_NEWEST).txt

real-packages:
	@missing=$$(for p in $$(awk '!/^#/ && /platform:dpkg/ && /[[ ]test[] ]/ {print $$1}' $(REAL_BINDEP)); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed' || echo "$$p"; \
	done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "Missing packages; as root: apt-get install" $$missing; exit 1; \
	  fi; \
	fi
	@if [ "$$(id -u)" = 0 ]; then \
	  getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu; \
	  getent passwd libvirt-qemu >/dev/null || useradd --system \
	    --gid libvirt-qemu --home-dir /var/lib/libvirt --no-create-home \
	    --shell /usr/sbin/nologin libvirt-qemu; \
	fi

real-venvs: $(REAL_STAMP) $(REAL_GLANCE)/.deps-installed \
	$(REAL_NEUTRON)/.deps-installed

$(REAL_STAMP): $(STAMP) $(CONSTRAINTS) requirements/real-tier.txt | real-packages
	$(PIP) install -q -c $(CONSTRAINTS) -r requirements/real-tier.txt
	touch $@

$(REAL_VENVS)/%/.deps-installed: $(REAL_SERVICES_CONSTRAINTS) requirements/real-tier-%.txt | real-packages
	test -x $(REAL_VENVS)/$*/bin/python || $(PYTHON) -m venv $(REAL_VENVS)/$*
	$(REAL_VENVS)/$*/bin/python -m pip --disable-pip-version-check install -q \
	  -c $(REAL_SERVICES_CONSTRAINTS) -r requirements/real-tier-$*.txt
	touch $@

# The real deployment tier alone; under CI=true nothing in it may skip.
test-real: install ceph real-packages real-venvs
	cd tests && ../$(PY) -m pytest -q -ra $(REAL_PYTEST_ARGS) real

# A nova-compute restart on the real tier, nova alone against guarded
# (tests/real/bench_restart.py; doc/source/benchmark.rst).
BENCH_REAL_ARGS ?= --instances 50 --restarts 5
bench-real: install ceph real-packages real-venvs
	cd tests && ../$(PY) -m real.bench_restart $(BENCH_REAL_ARGS)

clean:
	rm -rf $(VENV) .venv-nova-* $(PEP8_VENV) build dist *.egg-info doc/build
