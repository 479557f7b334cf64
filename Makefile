# iscsigw developer entry points.
#   make run    venv + a demo gateway on 127.0.0.1:3260 (prints the iSCSI URL)
#   make test   test deps (apt) + venv + ruff + mypy + all of tests/
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.installed
DATA_DIR    ?= ./var
PORTAL      ?= 127.0.0.1:3260
NAME        ?= gw1
PYTEST_ARGS ?= -ra

.PHONY: help venv run deps lint typecheck test test-unit test-integration test-fuzz \
        test-conformance clean

help:
	@echo "make run               set up $(VENV) and serve a demo target on $(PORTAL)"
	@echo "make test              install test deps, lint, type-check, run all tests"
	@echo "make test-unit | test-integration | test-fuzz | test-conformance"
	@echo "make lint | typecheck | venv | deps | clean"

# (Re)install when pyproject.toml changes; `python3 -m venv` needs Debian's python3-venv.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]'
	@# Debian's librados/librbd bindings are not on PyPI: link them in when present.
	@if ls /usr/lib/python3/dist-packages/rados.*.so >/dev/null 2>&1; then scripts/ceph-dev-cluster link-bindings $(VENV); fi
	@touch $@

venv: $(STAMP)

run: $(STAMP)
	exec $(BIN)/iscsigw serve --data-dir $(DATA_DIR) --portal $(PORTAL) --name $(NAME) --demo

deps:
	scripts/install-test-deps

lint: $(STAMP)
	$(BIN)/ruff check

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when it collected no tests: that fails `make test`, as it should.
test: deps
	@rm -f $(STAMP)  # re-link the Ceph bindings the deps step may just have installed
	$(MAKE) --no-print-directory $(STAMP)
	$(BIN)/ruff check
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS) tests/unit

test-integration: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS) tests/integration

test-fuzz: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS) tests/fuzz

test-conformance: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS) -s tests/conformance

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache .hypothesis
