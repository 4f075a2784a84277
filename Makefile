# The two entry points of the README: `make demo` and `make test`.
# Both create .venv and install streamon into it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint unit integration bench audit clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/streamon demo

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# The whole suite: lint, type check, unit tests and the integration tests against a
# real Kafka broker that the session fixture starts (deploy/kafka/broker.py).
test: lint
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
