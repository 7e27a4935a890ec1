# Vigil: every target creates and uses the project environment in .venv/.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
# Our machines keep the CPU build of torch as a local wheel; uv only looks where it is told.
FIND_LINKS ?= /opt/wheels
UV_FLAGS := --python $(PY) --override overrides.txt $(if $(wildcard $(FIND_LINKS)),--find-links $(FIND_LINKS))
STAMP := $(VENV)/.installed

.PHONY: help install models proto proto-check lint test run bench clean browser e2e

CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

help:
	@echo "make run    - set up everything and start all services (bridge at http://127.0.0.1:8000)"
	@echo "make test   - set up everything and run lint, contract checks and the test suite"
	@echo "make proto  - regenerate the committed gRPC code from proto/"
	@echo "make bench  - run the benchmarks"

$(STAMP): pyproject.toml overrides.txt
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(UV) pip install $(UV_FLAGS) -e '.[dev,llm]'
	$(PY) -m detector_service.envcheck
	touch $(STAMP)

install: $(STAMP)

models: install
	$(PY) -m detector_service.models

proto: install
	$(PY) scripts/gen_proto.py --out clients

proto-check: install
	$(PY) scripts/gen_proto.py --check clients

lint: install
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf format --diff --exit-code
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Debian's chromium for the end-to-end browser test (tests/e2e); Playwright only drives it.
browser:
	test -x $(CHROMIUM) || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }

test: install models lint proto-check browser
	$(PY) -m pytest

e2e: install models browser
	$(PY) -m pytest tests/e2e -q

run: install models
	$(VENV)/bin/vigil run

bench: install models
	$(VENV)/bin/vigil bench all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
