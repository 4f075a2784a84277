# The two entry points of the README: `make demo` and `make test`.
# Both create .venv and install streamon into it first; `make test` also runs `make setup`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install setup demo test lint unit integration bench audit clean

# Quiet (-q) but not silent: pip still prints its errors and the build backend's warnings.
# setuptools reports every editable install of a flat layout with a note ("Editable
# installation."), which says nothing here: that one message is filtered out.
$(VENV)/.installed: pyproject.toml
	@echo "install: $(VENV) with streamon and its dev dependencies (pip)"
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install -q -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/streamon demo

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# What the suite needs besides Python and make (Java, Maven, openssl, Prometheus tools, the
# Go validators, the Kafka broker jars): installed when missing, one line when in place.
setup:
	@PYTHON=$(PYTHON) bash deploy/install-tools.sh

# The whole suite: set-up, lint, type check, unit tests and the integration tests against
# a real Kafka broker that the session fixture starts (deploy/kafka/broker.py).
test: setup lint
	$(PY) -m pytest

unit: install
	$(PY) -m pytest -m "not integration"

bench: install
	$(PY) benchmarks/run_all.py

# Known vulnerabilities in the installed dependencies (pip-audit); the policy (retry, what
# fails, STREAMON_AUDIT_STRICT) is in .ci/audit and docs/security.md.
audit: install
	VENV=$(VENV) bash .ci/audit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
