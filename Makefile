# Quick start: `make run` serves Pulse on the embedded default; `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.PHONY: run demo test lint bench dynamodb-local browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/pulse serve --demo $(ARGS)

# Beside `make run` (same directory, same ./pulse.db): the coffee-shop demo, until Ctrl-C.
demo: $(STAMP)
	$(VENV)/bin/pulse demo --duration 0 $(ARGS)

# The browser tests (tests/browser/) drive the system Chromium; install it when missing, as root.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else echo "Chromium is missing ($(CHROMIUM)); the browser tests need it. Run: sudo apt-get install -y chromium" >&2; exit 1; fi; \
	fi

dynamodb-local: $(STAMP)
	@command -v java >/dev/null || { echo "Java 17 is required for DynamoDB Local: apt-get install openjdk-17-jre-headless" >&2; exit 1; }
	$(PY) scripts/dynamodb_local.py fetch

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) dynamodb-local browser lint
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .cache .pytest_cache
