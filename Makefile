# The two commands of the README. Each one builds .venv on first use (and again when
# pyproject.toml changes), so a fresh clone needs only Python 3.11, bash and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run check lint typecheck test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# `make run` starts the bot; `make run ARGS=chat` (or "models claude", ...) runs any subcommand.
ARGS ?= serve
run: $(STAMP)
	$(BIN)/routerbot $(ARGS)

check: lint typecheck test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP)
	$(BIN)/pytest

# Benchmarks (not tests: CI does not run them). `make bench BENCH_ARGS=--quick` for a short run.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
