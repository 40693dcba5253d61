# esb — the README's commands. `make` alone lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help demo test unit lint bench soak setup services clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,demo,bench]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install esb with its test tools
	@scripts/setup-system openssh-server

services:  ## start RabbitMQ (and check Redis) when they are not running
	@scripts/ensure-services

demo: setup  ## run the sample finance routes on the embedded broker (no RabbitMQ needed)
	$(BIN)/esb demo

test: setup services  ## install, start what must run, run every test and every route test
	$(BIN)/esb routes validate
	$(BIN)/esb routes test
	$(BIN)/python -m pytest -q

unit: setup services  ## unit tests only (need Redis for the store contract)
	$(BIN)/python -m pytest -q tests/unit

lint: setup  ## ruff
	$(BIN)/ruff check esb tests bench

bench: setup services  ## throughput and latency: esb against a hand-written raw-client baseline
	$(BIN)/python -m bench

soak: setup services  ## long fault and soak runs (not part of make test)
	$(BIN)/python -m pytest -q -m soak

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) var .pytest_cache .hypothesis
