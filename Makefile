# The two commands: `make run` (the whole local stack plus simulated patients) and
# `make test` (the whole test suite against real services started by fixtures).
SHELL := /bin/bash
VENV := .venv
RPM := $(VENV)/bin/rpm
PYTEST_ARGS ?=

.PHONY: setup run status stop logs test test-fast test-scenarios check bench

setup:
	@bash infra/setup.sh

run: setup
	@$(RPM) stack up

status:
	@$(RPM) stack status

stop:
	@$(RPM) stack down

logs:
	@$(RPM) stack logs

test: setup
	@$(VENV)/bin/pytest $(PYTEST_ARGS)

test-scenarios: setup
	@$(VENV)/bin/pytest tests/e2e/test_scenarios_detected.py $(PYTEST_ARGS)

test-fast: setup
	@$(VENV)/bin/pytest -m "not slow" $(PYTEST_ARGS)

check: setup
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy
	@$(VENV)/bin/lint-imports

bench: setup
	@for b in bench/*.py; do PYTHONPATH=. $(VENV)/bin/python "$$b" || exit 1; done
