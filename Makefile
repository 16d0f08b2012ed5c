# Everything a newcomer needs: `make demo` and `make test` set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# the embedded PostgreSQL keeps its data inside the checkout unless told otherwise
export SETTLEMENT_DATA_DIR ?= $(CURDIR)/.settlement

.PHONY: setup demo test lint bench soak clean db-down

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/settle demo

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check settlement adapters compliance ledger tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/transitions.py
	$(BIN)/python bench/screening.py
	$(BIN)/python bench/localnets.py
	$(BIN)/python bench/dvp.py
	$(BIN)/python bench/api.py

soak: setup
	$(BIN)/pytest -m slow --timeout=1800

db-down: setup
	$(BIN)/settle db down

clean:
	-$(BIN)/settle db down
	rm -rf $(VENV) .settlement .pytest_cache .mypy_cache .ruff_cache .hypothesis
