# `make test` and `make run` install what they need into .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# dg reads the project's environment from VIRTUAL_ENV; point it at .venv without activating it.
DG := VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/dg
API_PORT ?= 8765
API_STATE ?= .local_api_state
PORT ?= 3000

.PHONY: install run test test-ui fuzz lint format local-api bench bench-local-api clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m batch_assets.launcher --port $(PORT)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(DG) check defs
	$(DG) list defs
	$(BIN)/pytest

# The browser test (tests/ui, left out of `make test`): Playwright drives headless Chromium
# (Debian's /usr/bin/chromium, else `.venv/bin/playwright install chromium`) through `make run`'s UI.
test-ui: $(STAMP)
	$(BIN)/pytest tests/ui

fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -p no:logging tests/core -k properties

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

local-api: $(STAMP)
	$(BIN)/python -m batch_assets.local_api --port $(API_PORT) --state-dir $(API_STATE)

bench: $(STAMP)
	-$(BIN)/python benchmarks/core_bench.py
	-$(BIN)/python benchmarks/pipeline_bench.py --storage local --storage s3 2>/dev/null
	-$(BIN)/python benchmarks/storage_bench.py
	-$(BIN)/python benchmarks/gateway_bench.py
	$(BIN)/python benchmarks/local_api_bench.py

bench-local-api: $(STAMP)
	$(BIN)/python benchmarks/local_api_bench.py

clean:
	rm -rf $(VENV) $(API_STATE) .dagster_home data/generated .pytest_cache .ruff_cache
