# Butte's two set-up commands (see README.md):
#   make up     a local cluster in the foreground (one master, two agents); Ctrl-C stops it
#   make test   lint, format check, type check and the whole test suite; fails if any of them fails
# Both create .venv when it is missing and install what they need into it, from any clone directory.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# bench/ may not exist in a fresh clone while it has no tracked files.
CHECK_PATHS := butte tests $(wildcard bench)
PYTEST_ARGS ?= -ra --timeout=300

.PHONY: up test venv compat-deps zookeeper lint typecheck pytest

up: $(VENV)/.installed-base
	$(PY) -m butte.cli.main up

test: compat-deps zookeeper lint typecheck pytest

venv:
	@scripts/ensure-venv $(PYTHON) $(VENV)

# Stamps live inside the venv, so a venv made anew is installed anew; pyproject.toml changes reinstall.
$(VENV)/.installed-base: pyproject.toml | venv
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | venv
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@ $(VENV)/.installed-base

compat-deps: $(VENV)/.installed-test
	@scripts/install-compat-deps $(PY)

# Debian's zookeeper for the ensemble the ZooKeeper tests start (they skip, saying why, without it).
zookeeper:
	@scripts/install-zookeeper

lint: $(VENV)/.installed-test
	$(PY) -m ruff check $(CHECK_PATHS)
	$(PY) -m ruff format --check $(CHECK_PATHS)

typecheck: $(VENV)/.installed-test
	$(PY) -m mypy

pytest: compat-deps
	$(PY) -m pytest $(PYTEST_ARGS)
