# driftline: `make demo` and `make test` set everything up on first use.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
SERVING_VENV := .venv-serving
export DAGSTER_HOME := $(CURDIR)/data/dagster_home
export PYTHONPATH := $(CURDIR)

.PHONY: setup demo test dev bench-features bench-train bench-serving bench-drift clean lock

setup: $(VENV)/.installed $(SERVING_VENV)/.installed

# Installs exactly the tested set: direct pins in *.in, everything else fixed by *.lock.
$(VENV)/.installed: requirements/orchestration.in requirements/test.in requirements/orchestration.lock
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/orchestration.in \
		-r requirements/test.in -c requirements/orchestration.lock
	@touch $@

$(SERVING_VENV)/.installed: requirements/serving.in requirements/serving.lock
	@test -x $(SERVING_VENV)/bin/python || $(PYTHON) -m venv $(SERVING_VENV)
	$(SERVING_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/serving.in -c requirements/serving.lock
	@touch $@

$(DAGSTER_HOME)/dagster.yaml: deployment/local/dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp $< $@

demo: setup $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/python -m scripts.demo

test: setup
	@bash scripts/ensure_browser.sh
	$(VENV)/bin/python -m pytest

# The Dagster UI + daemon (sensors on) and the serving stack of the last deployment.
dev: setup $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/python -m scripts.dev

bench-features: setup
	$(VENV)/bin/python -m bench.bench_features

bench-train: setup
	$(VENV)/bin/python -m bench.bench_train

bench-serving: setup
	$(VENV)/bin/python -m bench.bench_serving

bench-drift: setup
	$(VENV)/bin/python -m bench.bench_drift

# Re-resolve the lock files after changing a direct dependency in requirements/*.in.
lock:
	$(VENV)/bin/pip freeze --exclude-editable > requirements/orchestration.lock
	$(SERVING_VENV)/bin/pip freeze --exclude-editable > requirements/serving.lock

clean:
	rm -rf data/lake data/warehouse.duckdb data/feast data/dagster_home data/bench
