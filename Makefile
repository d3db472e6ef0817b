# driftline: `make demo` and `make test` set everything up on first use.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
SERVING_VENV := .venv-serving
.DEFAULT_GOAL := help
export DAGSTER_HOME := $(CURDIR)/data/dagster_home

.PHONY: setup lint test-fast demo test dev images eval-v2 bench-features bench-train bench-serving bench-hostile bench-drift bench-import bench-images bench-stream stream stream-worker clean distclean setup-browser help lock

setup: $(VENV)/.installed $(SERVING_VENV)/.installed ## create .venv and .venv-serving and install the project (make demo and make test do it on first use)

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

demo: setup $(DAGSTER_HOME)/dagster.yaml ## the closed loop end to end: prints the timeline, Dagster's log to a file (VERBOSE=1: live)
	$(VENV)/bin/driftline demo $(if $(VERBOSE),--verbose)

# ruff (lint + format) and pyright: orchestration code against .venv, seldon/ against .venv-serving.
export PYRIGHT_PYTHON_IGNORE_WARNINGS := 1
lint: setup ## ruff (lint, format check) and pyright on everything
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright
	$(VENV)/bin/pyright -p pyrightconfig.serving.json

test: setup lint ## lint, then every test (installs Chromium for the UI test first, saying so: see setup-browser)
	@bash scripts/ensure_browser.sh
	$(VENV)/bin/python -m pytest

# The edit loop: no live servers, browser, daemon, cluster, Spark or slow end-to-end runs.
test-fast: setup ## the edit loop: tests without live servers, browser, daemon, cluster, Spark or slow runs
	$(VENV)/bin/python -m pytest -m "$(FAST_TESTS)"

# The Dagster UI + daemon (sensors on), the stream worker (once the Feast repo exists; RabbitMQ) and the
# serving stack of the last deployment.
dev: setup $(DAGSTER_HOME)/dagster.yaml ## Dagster UI + daemon (:3000), MLflow UI (:5000), drift reports (:3030), stream worker, serving; Ctrl-C stops all
	$(VENV)/bin/driftline dev

# The user-code and serving images (deployment/images/build.sh; needs a running docker or podman):
# the base image is made from Debian packages when missing, torch is the CPU build.
images: ## the user-code and serving images (docker or podman)
	bash deployment/images/build.sh

bench-features: setup ## feature computation on 5 M events beside pandas, Polars, Spark
	$(VENV)/bin/python -m bench.bench_features

bench-train: setup ## training samples/s, scoring rows/s, PR-AUC vs baseline
	$(VENV)/bin/python -m bench.bench_train
	$(VENV)/bin/python -m bench.bench_train --rows $${ROWS:-1000000}

bench-serving: setup ## req/s and latency through the ingress and the predictor
	$(VENV)/bin/python -m bench.bench_serving

# bench/hostile.py: hostile requests at both servers, good ones beside them; exits 1 on any miss.
bench-hostile: setup ## ~2,200 hostile requests at the ingress and a predictor: answers per category
	$(VENV)/bin/python -m bench.hostile

bench-drift: setup ## drift computation at 100 k and 1 M rows
	$(VENV)/bin/python -m bench.bench_drift

# Events/s through RabbitMQ: publish + consume with no feature work (the floor), the full path
# (publisher + broker + stream worker + online-store writes) with event-to-servable p50/p99, the sink alone.
bench-stream: setup ## events/s through RabbitMQ
	$(VENV)/bin/python -m bench.bench_stream

# A synthetic day through the broker at STREAM_RATE events/s (docs/streaming.md); the lake sink
# (`driftline stream sink`) lands it for landing_sensor. DRIFTLINE_BROKER_URL: the broker.
STREAM_DAY ?=
STREAM_RATE ?= 2000
stream: setup ## publish a synthetic day to the broker at STREAM_RATE events/s
	$(VENV)/bin/driftline stream publish $(if $(STREAM_DAY),--day $(STREAM_DAY)) --rate $(STREAM_RATE)

# The stream feature worker (docs/streaming.md): fresh velocity features into the online store,
# until Ctrl-C. STREAM_SHARE=i/n runs one of n workers (each owns the partitions p mod n == i).
STREAM_SHARE ?=
stream-worker: setup ## the stream feature worker until Ctrl-C (STREAM_SHARE=i/n)
	$(VENV)/bin/driftline stream worker $(if $(STREAM_SHARE),--share $(STREAM_SHARE))

# fraud_model_v1 vs fraud_model_v2 on the same training days and test split (bench/eval_v1_v2.py):
# PR-AUC and recall at 1 % FPR, overall and per fraud pattern (card testing separately).
eval-v2: setup ## fraud_model_v1 vs v2 on the same days and test split
	$(VENV)/bin/python -m bench.eval_v1_v2

# `import definitions` (what every Dagster process pays): median of five fresh processes.
bench-import: setup ## import time of definitions.py (median of five)
	$(VENV)/bin/python -m bench.bench_import

# The user-code image's cost: one data-plane partition in the image beside the same in .venv.
bench-images: setup ## one data-plane partition in the user-code image vs .venv
	$(VENV)/bin/python -m bench.bench_container

# Re-pin the lock files after changing a direct dependency (pyproject.toml, seldon/requirements.txt)
# and running `make setup`.
# The torch pin drops its local label (+cpu): the images and users get the CPU build from
# PyTorch's CPU index or a local wheel, and `torch==2.13.0` matches either.
lock: ## re-pin requirements/*.lock from the two venvs
	$(VENV)/bin/pip freeze --exclude-editable | sed -E 's/^(torch==[^+]+)\+.*/\1/' > requirements/orchestration.lock
	$(SERVING_VENV)/bin/pip freeze --exclude-editable | sed -E 's/^(torch==[^+]+)\+.*/\1/' > requirements/serving.lock

# Everything generated: data/ (lake, warehouse, Feast registry and online store, MLflow store and
# artifacts, serving state, reports, Dagster home, the JWT secret) and the UI test's screenshots.
# A serving runtime still running is stopped first. The venvs stay (distclean removes them too).
clean: ## remove all generated state (data/ incl. MLflow, models, serving, reports, Dagster home); keeps the venvs
	@if [ -x $(VENV)/bin/python ] && [ -f data/serving/runtime.pid ]; then \
	  $(VENV)/bin/python -c 'from resources import SeldonTarget; SeldonTarget(serving_dir="data/serving").stop_runtime()'; fi
	rm -rf data test-artifacts

distclean: clean ## clean, and remove the venvs
	rm -rf $(VENV) $(SERVING_VENV) *.egg-info seldon/*.egg-info

# Headless Chromium for the UI test (Debian packages; needs root). `make test` runs it too, saying so.
setup-browser: ## install headless Chromium + chromedriver for the UI test (apt-get)
	bash scripts/ensure_browser.sh

# Each target's `## ` comment is its line here.
help: ## list the commands
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-zA-Z0-9_-]+):.*## (.*)/\1\t\2/' | \
	  awk -F'\t' '{ printf "  make %-16s %s\n", $$1, $$2 }'
