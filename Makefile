# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: setup protos demo up test test-unit lint typecheck buf bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP) protos
	bash tools/buf.sh setup   # buf for `buf lint` / `buf generate` at the root (ADR 0040)

protos: $(STAMP)
	$(BIN)/python tools/gen_protos.py

demo: setup            ## set up, start the suite on embedded defaults, play the story
	$(BIN)/reckon demo

up: setup              ## run every service in the foreground (Ctrl-C stops them)
	$(BIN)/reckon up

test: setup            ## set up, make sure Redis/PostgreSQL are there, lint, run every test
	bash tools/ensure_services.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	bash tools/buf.sh
	$(BIN)/pytest -q --durations=30   # the slowest tests named at the end: keep `make test` under 30 min

test-unit: setup
	$(BIN)/pytest -q tests/unit

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

buf:                   ## buf lint (STANDARD) and buf breaking against the previous protos
	bash tools/buf.sh

bench: setup           ## the gRPC echo baseline every service benchmark compares against
	$(BIN)/python -m bench.grpc_baseline

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find reckon -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
