# `make run`: serve the API and the drift worker locally; `make test`: the whole test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL_DIR ?= models
# The data file; empty means train.py fetches the data set with scikit-learn (needs the network).
HOUSING_DATA ?= $(wildcard $(CURDIR)/../shared/data/cal_housing.data)
export HOUSING_DATA MODEL_DIR

.PHONY: install model run test bench clean

$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $@

install: $(BIN)/.installed

model: install
	$(BIN)/python train.py --if-missing --model-dir $(MODEL_DIR)

run: model
	$(BIN)/python scripts/run_local.py --model-dir $(MODEL_DIR)

test: install
	$(BIN)/python -m pytest

bench: model
	$(BIN)/python scripts/benchmark.py --model-dir $(MODEL_DIR)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .run
