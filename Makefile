# Everything a newcomer needs: `make demo` and `make test` set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# the embedded PostgreSQL keeps its data inside the checkout unless told otherwise
export SETTLEMENT_DATA_DIR ?= $(CURDIR)/.settlement

.PHONY: setup browser demo test lint bench soak clean db-down

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/settle demo

# The console's browser tests need Debian's chromium: installed when this runs as root on
# a Debian-like system; otherwise those tests are skipped and pytest's summary says how
# to enable them.
browser:
	@.ci/install-browser || echo "note: chromium is not installed; the console's browser tests will be skipped"

test: setup browser
	$(BIN)/pytest
	@[ -x /usr/bin/chromium ] || echo "note: the console's browser tests did not run (Chromium is missing); enable them with: sudo .ci/install-browser"

lint: setup
	$(BIN)/ruff check settlement adapters compliance ledger tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/transitions.py
	$(BIN)/python bench/screening.py
	$(BIN)/python bench/localnets.py
	$(BIN)/python bench/dvp.py --mode both --workers 1,4 --in-flight 8,32
	$(BIN)/python bench/webhooks.py
	$(BIN)/python bench/api.py

soak: setup
	$(BIN)/pytest -m slow --timeout=1800

db-down: setup
	$(BIN)/settle db down

clean:
	-$(BIN)/settle db down
	rm -rf $(VENV) .settlement .pytest_cache .mypy_cache .ruff_cache .hypothesis
