# driftline: `make demo` and `make test` set everything up on first use.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
SERVING_VENV := .venv-serving
export DAGSTER_HOME := $(CURDIR)/data/dagster_home

.PHONY: setup lint test-fast demo test dev images bench-features bench-train bench-serving bench-drift bench-import bench-images bench-stream stream clean lock

setup: $(VENV)/.installed $(SERVING_VENV)/.installed

FAST_TESTS := not (postgres or redis or rabbitmq or browser or daemon or cluster or container or prometheus or spark or slow)

# Both environments install the project editable, exactly the tested set: direct dependencies in
# pyproject.toml (seldon/requirements.txt for serving), every other version fixed by the lock.
PIP := pip install --quiet --disable-pip-version-check

$(VENV)/.installed: pyproject.toml requirements/orchestration.lock
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/$(PIP) -e '.[test,lint]' -c requirements/orchestration.lock
	@touch $@

$(SERVING_VENV)/.installed: seldon/pyproject.toml seldon/requirements.txt requirements/serving.lock
	@test -x $(SERVING_VENV)/bin/python || $(PYTHON) -m venv $(SERVING_VENV)
	$(SERVING_VENV)/bin/$(PIP) -e './seldon[test]' -c requirements/serving.lock
	@touch $@

$(DAGSTER_HOME)/dagster.yaml: deployment/local/dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp $< $@

demo: setup $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/driftline demo

# ruff (lint + format) and pyright: orchestration code against .venv, seldon/ against .venv-serving.
export PYRIGHT_PYTHON_IGNORE_WARNINGS := 1
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright
	$(VENV)/bin/pyright -p pyrightconfig.serving.json

test: setup lint
	@bash scripts/ensure_browser.sh
	$(VENV)/bin/python -m pytest

# The edit loop: no live servers, browser, daemon, cluster, Spark or slow end-to-end runs.
test-fast: setup
	$(VENV)/bin/python -m pytest -m "$(FAST_TESTS)"

# The Dagster UI + daemon (sensors on) and the serving stack of the last deployment.
dev: setup $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/driftline dev

# The user-code and serving images (deployment/images/build.sh; needs a running docker or podman):
# the base image is made from Debian packages when missing, torch is the CPU build.
images:
	bash deployment/images/build.sh

bench-features: setup
	$(VENV)/bin/python -m bench.bench_features

bench-train: setup
	$(VENV)/bin/python -m bench.bench_train
	$(VENV)/bin/python -m bench.bench_train --rows $${ROWS:-1000000}

bench-serving: setup
	$(VENV)/bin/python -m bench.bench_serving

bench-drift: setup
	$(VENV)/bin/python -m bench.bench_drift

# Events/s through RabbitMQ: publish + consume with no feature work (the floor), the lake sink alone.
bench-stream: setup
	$(VENV)/bin/python -m bench.bench_stream

# A synthetic day through the broker at STREAM_RATE events/s (docs/streaming.md); the lake sink
# (`driftline stream sink`) lands it for landing_sensor. DRIFTLINE_BROKER_URL: the broker.
STREAM_DAY ?=
STREAM_RATE ?= 2000
stream: setup
	$(VENV)/bin/driftline stream publish $(if $(STREAM_DAY),--day $(STREAM_DAY)) --rate $(STREAM_RATE)

# `import definitions` (what every Dagster process pays): median of five fresh processes.
bench-import: setup
	$(VENV)/bin/python -m bench.bench_import

# The user-code image's cost: one data-plane partition in the image beside the same in .venv.
bench-images: setup
	$(VENV)/bin/python -m bench.bench_container

# Re-pin the lock files after changing a direct dependency (pyproject.toml, seldon/requirements.txt)
# and running `make setup`.
# The torch pin drops its local label (+cpu): the images and users get the CPU build from
# PyTorch's CPU index or a local wheel, and `torch==2.13.0` matches either.
lock:
	$(VENV)/bin/pip freeze --exclude-editable | sed -E 's/^(torch==[^+]+)\+.*/\1/' > requirements/orchestration.lock
	$(SERVING_VENV)/bin/pip freeze --exclude-editable | sed -E 's/^(torch==[^+]+)\+.*/\1/' > requirements/serving.lock

clean:
	rm -rf data/lake data/warehouse.duckdb data/feast data/dagster_home data/bench
