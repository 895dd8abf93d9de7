# One entry point for people and CI: `make demo` runs the embedded default, `make test` runs everything.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The dev venv installs exactly these pins (runtime + emulator + test extras, with hashes), then the
# project itself without dependencies; the image installs requirements/runtime.lock the same way.
TEST_LOCK := requirements/test.lock
RUNTIME_LOCK := requirements/runtime.lock

.PHONY: demo test lint typecheck unit integration e2e kube kube-binaries bench clean lock system-deps

$(STAMP): pyproject.toml $(TEST_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(TEST_LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $(STAMP)

# Regenerate both locks from pyproject.toml's ranges, for the Python and OS the image and CI run
# (3.11, Linux), whatever machine runs this. uv rather than pip-tools: `uv pip compile` resolves for
# a target Python and platform instead of the interpreter it runs in, is fast, and is kept up to date;
# it comes from PyPI with the test extra. Pins already in a lock are kept while the ranges allow;
# `make lock UPGRADE=--upgrade` takes the newest versions instead.
UPGRADE ?=
LOCK_FLAGS := --python-version 3.11 --python-platform linux --generate-hashes --quiet $(UPGRADE) \
	--custom-compile-command "make lock"
lock: $(STAMP)
	$(BIN)/uv pip compile $(LOCK_FLAGS) pyproject.toml -o $(RUNTIME_LOCK)
	$(BIN)/uv pip compile $(LOCK_FLAGS) --extra emulator --extra test pyproject.toml -o $(TEST_LOCK)

demo: $(STAMP)
	$(BIN)/lambda-rollouts demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check controller tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Prometheus (and python3-venv on a bare Debian) installed when missing and possible, else named.
system-deps:
	sh tests/system-deps.sh $(PYTHON)

test: system-deps lint typecheck kube-binaries
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
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/ticks.py
	$(BIN)/python bench/reaction.py
	$(BIN)/python bench/coldstart.py
	$(BIN)/python bench/faults.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .cache
