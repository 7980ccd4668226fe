# The two set-up commands from the README: `make demo` and `make test`; `make check` is the
# fast tier for day-to-day work (lint + the unit tests: not slow, not under tests/system/).
# Each installs what it needs into .venv (safe to run twice), pinned to the versions of
# Databricks Runtime 17.3 LTS ML (constraints/dbr-17.3-ml.txt), so the suite proves the
# code on the runtime's stack.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONSTRAINTS ?= constraints/dbr-17.3-ml.txt
EXTRAS ?= local,dev,weights

.PHONY: demo test check lint format install clean

LINTED := lib jobs tests benchmarks notebooks

$(STAMP): setup.py $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) jobs/nightly.py --conf conf/local.yaml --warm-up --demo --nights 3

lint: $(STAMP)
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)

format: $(STAMP)
	$(PY) -m ruff format $(LINTED)
	$(PY) -m ruff check --fix $(LINTED)

check: lint
	$(PY) -m pytest -q -m "not system and not slow" --durations=10 tests

test: lint
	$(PY) -m pytest -q --durations=25 tests

clean:
	rm -rf lakehouse artifacts reports spark-warehouse mlruns
