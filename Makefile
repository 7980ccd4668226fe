# The two set-up commands from the README: `make demo` and `make test`.
# Each installs what it needs into .venv (safe to run twice).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean bench

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) jobs/nightly.py --conf conf/local.yaml --demo

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf lakehouse artifacts reports spark-warehouse
