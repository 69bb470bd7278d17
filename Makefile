# Kustos — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(wildcard kustos/protos/*.proto)

.PHONY: run test lint typecheck imports unit system-deps bench clean

# The gRPC stubs (kustos/protos/*_pb2*.py) are generated, never committed: the install's
# build step makes them, and generate_protos.py runs again (a no-op when fresh) after it.
$(STAMP): pyproject.toml setup.py scripts/generate_protos.py $(PROTOS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python scripts/generate_protos.py
	@touch $(STAMP)

## run: set up and start the dev server on 127.0.0.1:8200 (SQLite + local key under ./.kustos)
run: $(STAMP)
	$(BIN)/kustos server --dev

## system-deps: install the system programs the tests use (PostgreSQL, SoftHSM2, gpg, age, etcd, Chromium)
system-deps:
	@bash scripts/install-system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

## unit: run the test suite inside a private network namespace (loopback only)
unit: $(STAMP)
	@bash scripts/run-tests.sh

## test: set up, then lint, type-check, check import layers and run every test
test: $(STAMP) system-deps lint typecheck imports unit

bench: $(STAMP)
	$(BIN)/python bench/kv.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
