# The two commands: `make run` (the local pipeline on the embedded data) and `make test`.
# Both create .venv (Python 3.10) from requirements.lock on first use.
SHELL := /bin/bash
PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10.13/bin/python3.10) $(shell command -v python3.10 2>/dev/null))
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
# TF and TFX are chatty at import; keep their INFO lines out of the way.
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONWARNINGS ?= ignore

.PHONY: run run-text test lint docs bench bench-publish bench-streaming reliability lock lock-ray clean env

env: $(STAMP)

$(STAMP): requirements.lock setup.py
	@test -n "$(PYTHON)" || { echo "Python 3.10 not found: set PYTHON=/path/to/python3.10"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$$(grep -m1 '^uv==' requirements.lock | cut -d' ' -f1)"
	$(UV) pip sync -q --compile-bytecode --python $(PY) requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps --config-settings editable_mode=compat -e .
	@touch $(STAMP)

run: $(STAMP)
	$(PY) local_runner.py

# The second pipeline: sentence embeddings of template/data/reviews with all-MiniLM-L6-v2.
run-text: $(STAMP)
	PIPELINE=text $(PY) local_runner.py

# The report's browser test drives headless Chromium (Debian's package). The linter runs
# and the docs are built first: a lint finding, a broken link or a page missing from the
# nav fails the tests.
test: $(STAMP)
	@command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }
	$(MAKE) lint docs
	$(PY) -m pytest tests $(PYTEST_ARGS)

# ruff, configured in ruff.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check --no-cache .

# README.md and docs/ as a site in outputs/site (mkdocs.yml; --strict: warnings fail).
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict -d outputs/site

bench: $(STAMP)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# The newest `make bench` run (or BENCH_RUN=outputs/bench/<timestamp>) becomes
# docs/benchmarks/results.md, the docs' benchmark page; commit it with the run's code.
bench-publish: $(STAMP)
	$(PY) -m benchmarks.report --publish $(BENCH_RUN)

# Streaming against the Pub/Sub emulator on the local runner (benchmarks/streaming.py).
bench-streaming: $(STAMP)
	$(PY) -m benchmarks.streaming $(BENCH_ARGS)

reliability: $(STAMP)
	$(PY) -m benchmarks.reliability

# Re-resolve the lock after editing requirements.in or overrides.txt.
lock: $(STAMP)
	$(UV) pip compile -q requirements.in --override overrides.txt --python-version 3.10 \
	  --python-platform x86_64-manylinux_2_28 --generate-hashes -o requirements.lock

# The Ray Data benchmark case's own lock (its venv, .venv-ray, is built by `make bench`).
lock-ray: $(STAMP)
	$(UV) pip compile -q benchmarks/ray_data/requirements.in --python-version 3.10 \
	  --python-platform x86_64-manylinux_2_28 --generate-hashes -o benchmarks/ray_data/requirements.lock

clean:
	rm -rf outputs .pytest_cache
