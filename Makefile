# One entry point for people and CI: `make demo` runs the embedded default, `make test` runs everything.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration e2e kube kube-binaries bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lambda-rollouts demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check controller tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck kube-binaries
	$(BIN)/pytest -n 2 --dist loadfile tests

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadfile tests/integration

e2e: $(STAMP)
	$(BIN)/pytest tests/e2e

# A real kube-apiserver, etcd, kubectl and helm for tests/kube, built from the pinned Go module in
# tests/kube/gobuild into .cache/kube/bin; a second call returns at once while they match the pins.
kube-binaries:
	bash tests/kube/build.sh

kube: $(STAMP) kube-binaries
	$(BIN)/pytest tests/kube

bench: $(STAMP)
	$(BIN)/python bench/ticks.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .cache
