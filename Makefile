# Two commands: `make demo` and `make test`. Each creates .venv and installs the project when
# the venv is missing or pyproject.toml changed.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pip's find-links/index warnings about local mirrors are noise; keep real errors.
PIPQUIET := grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: demo test lint install clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	@echo "installing medae into $(VENV) (first time takes a few minutes)"
	@$(BIN)/python -m pip install -q --upgrade pip 2>&1 | { $(PIPQUIET); }
	@$(BIN)/python -m pip install -q -e ".[dev]" 2>&1 | { $(PIPQUIET); }
	@$(BIN)/python -c "import medae, torch, polars, wfdb, prefect, mlflow" 
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

demo: $(STAMP)
	@bash scripts/demo.sh
