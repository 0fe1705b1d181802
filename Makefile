# The two commands a newcomer needs: `make up` runs the shop, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
DEVELOPMENT := $(VENV)/.development-installed

.PHONY: up test lint e2e verify-containers bench clean

$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEVELOPMENT): $(RUNTIME)
	$(BIN)/pip install --quiet -e '.[dev,otel,bench]'
	touch $@

up: $(RUNTIME)
	$(BIN)/microshop up

lint: $(DEVELOPMENT)
	$(BIN)/ruff check src tests benchmarks deploy
	$(BIN)/ruff format --check src tests benchmarks deploy
	$(BIN)/mypy
	$(BIN)/shellcheck --external-sources .ci/run .ci/*.sh deploy/verify/*.sh

test: lint
	$(BIN)/pytest
	PYTHON=$(BIN)/python .ci/e2e-in-sandbox.sh

e2e: $(DEVELOPMENT)
	PYTHON=$(BIN)/python .ci/e2e-in-sandbox.sh

# The image built and run, the manifests run as pods, compose.yaml run (root, Docker, Podman;
# docs/kubernetes.md).
verify-containers: $(DEVELOPMENT)
	PYTHON=$(BIN)/python deploy/verify/image.sh
	PYTHON=$(BIN)/python deploy/verify/pods.sh
	PYTHON=$(BIN)/python deploy/verify/compose.sh

bench: $(DEVELOPMENT)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts wheelhouse
