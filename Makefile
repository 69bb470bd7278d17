# Kustos — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck imports unit system-deps bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## run: set up and start the dev server on 127.0.0.1:8200 (SQLite + local key under ./.kustos)
run: $(STAMP)
	$(BIN)/kustos server --dev

## system-deps: install the system programs the tests use (PostgreSQL, SoftHSM2, gpg, age, etcd)
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
