# nova-guardrails: `make lab` runs the lab, `make test` runs every test.
# Both create .venv idempotently: nova 34.0.0 and the test dependencies are
# pinned by requirements/constraints-nova-34.0.0.txt, and nova-guardrails is
# installed the way an operator installs it (a wheel, not editable).

PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= requirements/constraints-nova-34.0.0.txt
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.deps-installed

.PHONY: venv install lab test docs sample clean

venv: $(STAMP)

$(STAMP): $(CONSTRAINTS) requirements.txt test-requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 is required, $(PYTHON) is %d.%d" % sys.version_info[:2] or 0)'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(CONSTRAINTS) -r requirements.txt -r test-requirements.txt
	touch $@

# Reinstalled at every run so the tests and the lab see this tree; --no-deps
# and --no-build-isolation keep it to the pinned environment (pbr from it).
install: venv
	$(PIP) install -q --no-deps --no-build-isolation --force-reinstall .

lab: install
	$(VENV)/bin/nova-guardrails lab

test: install
	cd tests && ../$(PY) -m pytest -q -ra $(PYTEST_ARGS) .

# The documentation; a Sphinx warning fails the build.
docs: install
	$(VENV)/bin/sphinx-build -E -W --keep-going -q -b html doc/source doc/build/html

# Regenerate etc/nova-guardrails.conf.sample (a unit test checks it).
sample: install
	$(VENV)/bin/oslo-config-generator --config-file etc/oslo-config-generator/nova-guardrails.conf

clean:
	rm -rf $(VENV) build dist *.egg-info doc/build
