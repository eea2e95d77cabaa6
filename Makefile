# Quick start: `make run` serves Pulse on the embedded default; `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.PHONY: run test lint bench dynamodb-local clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/pulse serve $(ARGS)

dynamodb-local: $(STAMP)
	@command -v java >/dev/null || { echo "Java 17 is required for DynamoDB Local: apt-get install openjdk-17-jre-headless" >&2; exit 1; }
	$(PY) scripts/dynamodb_local.py fetch

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) dynamodb-local lint
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .cache .pytest_cache
