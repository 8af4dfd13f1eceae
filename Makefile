# The README's two commands are `make demo` and `make test`; both set everything up on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 3000

.PHONY: install demo test lint format prepare dev bench lock clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@# dagster-dbt's prepare step (the dbt manifest the code location loads), as a deployment
	@# build does it; `mlops demo` and `mlops prepare` redo it only when the dbt project changed.
	$(BIN)/mlops prepare
	@touch $(STAMP)

install: $(STAMP)

## The main job end to end on the embedded profile.
demo: install
	$(BIN)/mlops demo

## The test suite (CI=true makes the PostgreSQL/Redis tests mandatory).
test: install
	$(BIN)/mlops prepare
	$(BIN)/pytest -q -ra

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

prepare: install
	$(BIN)/mlops prepare

## The Dagster UI and daemon on the same local instance `make demo` writes to (the profile's:
## MLOPS_ENV=services has its own, on PostgreSQL).
dev: install
	$(BIN)/mlops prepare
	DAGSTER_HOME=$${DAGSTER_HOME:-$$($(BIN)/python -c 'from mlops_assets.settings import get_settings as s; print(s().dagster_home)')} \
		PATH=$(CURDIR)/$(BIN):$$PATH \
		DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=true \
		$(BIN)/dagster dev -h 127.0.0.1 -p $(PORT)

bench: install
	$(BIN)/python benchmarks/bench_lakehouse.py

## Re-resolve and re-pin every dependency (the lock is constraints.txt).
lock:
	rm -rf /tmp/mlops-lock-venv && python3 -m venv /tmp/mlops-lock-venv
	/tmp/mlops-lock-venv/bin/pip install --quiet -e '.[dev]'
	( echo "# Lock: the exact versions CI and the README install (pip install -c constraints.txt -e '.[dev]')."; \
	  echo "# Regenerate with: make lock"; \
	  /tmp/mlops-lock-venv/bin/pip freeze --exclude-editable | grep -v '^-e' ) > constraints.txt

clean:
	rm -rf data dbt_project/target
