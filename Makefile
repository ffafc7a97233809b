# Every target installs what it needs into .venv from this repository's own files.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LIBRARY := layers/tenantscope
DIST ?= dist
PIP_VERSION := 26.3
# sam build needs the Lambda runtime's python (python3.13) on PATH; pyenv provides it where present.
export PYENV_VERSION ?= 3.11.7:3.12.1:3.13.0

# The functions' and the layer's architecture for every target that builds (template.yaml's
# Architecture): arm64, as deployed, or x86_64, which `sam local` runs natively on x86_64 hosts.
ARCH ?= arm64
ENV ?= dev
# samconfig.toml: [default] is the dev environment, [prod] production.
CONFIG_ENV := $(if $(filter dev,$(ENV)),default,$(ENV))
SAM := SAM_CLI_TELEMETRY=0 $(BIN)/sam

.PHONY: help install test lint typecheck demo soak events bench mutation build deploy clean dist \
	local-aws local-aws-stop env-from-stack sam-local-test

help:
	@echo "make demo   - the main job on an embedded local AWS (moto)"
	@echo "make test   - every check: ruff, mypy, pytest (unit, integration, e2e, template gates)"
	@echo "make soak [SEED=n] [ORDERS=2000] [TENANTS=50] - the whole flow under load and injected faults"
	@echo "make events - regenerate the signed, dated sample events"
	@echo "make bench  - benchmarks; writes benchmarks/results.md"
	@echo "make mutation [MODULES=\"_tenant_id _resolve\"] - mutation testing of the layer, module by module (docs/testing.md)"
	@echo "make build [ARCH=x86_64] - sam build for arm64 (default) or x86_64"
	@echo "make dist   - the tenantscope wheel and sdist (layers/tenantscope) in dist/"
	@echo "make deploy ENV=dev - sam build && sam deploy --config-env ENV (default for dev)"
	@echo "make local-aws      - the stack on a local AWS (moto) for sam local; writes events/env.local.json"
	@echo "make local-aws-stop - stop it"
	@echo "make env-from-stack STACK=name - events/env.deployed.json from a deployed stack's outputs"
	@echo "make sam-local-test - the README's sam local flow, run with the real SAM CLI and Docker"

# The library is layers/tenantscope (its own pyproject.toml), installed editable; its dependencies,
# extras included, are pinned in requirements-dev.txt with the development tools.
$(STAMP): requirements-dev.txt pyproject.toml $(LIBRARY)/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check pip==$(PIP_VERSION)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
		-e '$(LIBRARY)[xray]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# On every core: a test module runs whole on one worker, so its module fixtures (a sam build, the
# soak run) are made once.
test: lint typecheck
	$(BIN)/pytest -n auto --dist loadscope

demo: $(STAMP)
	$(BIN)/python -m devtools.demo

soak: $(STAMP)
	$(BIN)/python -m devtools.soak $(if $(SEED),--seed $(SEED)) $(if $(ORDERS),--orders $(ORDERS)) $(if $(TENANTS),--tenants $(TENANTS))

events: $(STAMP)
	$(BIN)/python -m devtools.events

build: $(STAMP)
	@case "$(ARCH)" in arm64|x86_64) ;; *) echo "ARCH must be arm64 or x86_64, not '$(ARCH)'" >&2; exit 2;; esac
	TENANTSCOPE_ARCH=$(ARCH) $(SAM) build --parameter-overrides Architecture=$(ARCH)
	$(BIN)/python -m devtools.sam built-for $(ARCH)

# The wheel and sdist of layers/tenantscope, with the pinned setuptools of .venv (no download).
dist: $(STAMP)
	$(BIN)/python -m build --no-isolation --outdir $(DIST) $(LIBRARY)

deploy: build
	$(SAM) deploy --config-env $(CONFIG_ENV)

clean:
	rm -rf $(VENV) .aws-sam .mypy_cache .ruff_cache $(DIST) $(LIBRARY)/build $(LIBRARY)/*.egg-info

local-aws: $(STAMP)
	$(BIN)/python -m devtools.local_server start

local-aws-stop: $(STAMP)
	$(BIN)/python -m devtools.local_server stop

env-from-stack: $(STAMP)
	@test -n "$(STACK)" || { echo "usage: make env-from-stack STACK=<stack name>" >&2; exit 2; }
	$(BIN)/python -m devtools.stack_env $(STACK)

sam-local-test: $(STAMP)
	$(BIN)/python -m devtools.sam_local_test

# The layer's modules to mutation-test (default: all of them, see devtools/mutation.py), at the
# lowest CPU priority: it runs for many minutes on every core it is given (JOBS).
MODULES ?=
JOBS ?= 2
mutation: $(STAMP)
	nice -n 19 $(BIN)/python -m devtools.mutation --jobs $(JOBS) $(MODULES)

bench: $(STAMP)
	PYTHONPATH=. $(BIN)/python benchmarks/bench.py
