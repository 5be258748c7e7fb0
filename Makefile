# One Makefile that a new user, pre-commit and CI all call.
# Needs only Python >= 3.11: the first target run creates .venv and installs Croupier into it.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: all serve test test-fast lint typecheck format clean loadtest-smoke screenshot

all: lint typecheck test

$(BIN)/croupier: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

## Start the server on the embedded PostgreSQL and Redis (data in ./.croupier).
serve: $(BIN)/croupier
	$(BIN)/croupier serve

## The whole test suite (unit, integration against real PostgreSQL + Redis, simulations).
## Embedded servers by default; set CROUPIER_TEST_DATABASE_URL / CROUPIER_TEST_REDIS_URL to use running ones.
test: $(BIN)/croupier
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## Everything except the slow process-level tests and the simulations.
test-fast: $(BIN)/croupier
	$(BIN)/python -m pytest -q -m "not slow and not simulation" $(PYTEST_ARGS)

## Start a server with demo data and save a picture of the dashboard (needs chromium + playwright).
screenshot: $(BIN)/croupier
	$(BIN)/python -m tests.browser.screenshot --out docs/dashboard.png

## ~20 s of the Locust mix against a fresh `croupier serve`; fails on any failure or 5xx.
## Needs locust in the venv (`$(BIN)/pip install locust`); see loadtests/README.md.
loadtest-smoke: $(BIN)/croupier
	$(BIN)/python loadtests/smoke.py

lint: $(BIN)/croupier
	$(BIN)/ruff check src tests benchmarks loadtests
	$(BIN)/ruff format --check src/croupier/decision src/croupier/ingest src/croupier/stats

typecheck: $(BIN)/croupier
	$(BIN)/mypy

format: $(BIN)/croupier
	$(BIN)/ruff format src tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
