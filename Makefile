# esb — the README's commands. `make` alone lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# demo-only values for the shipped adapters (LEDGER_TOKEN, ...); production sets real ones
DEMO   := --env-file config/demo.env
DEMO_KEY := var/sftp/client_key

.PHONY: help demo demo-key test unit lint bench soak soak-rss cluster-test setup services deploy-docs clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,demo,bench]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install esb with its test tools
	@scripts/setup-system openssh-server

services:  ## start RabbitMQ (and check Redis) when they are not running
	@scripts/ensure-services

demo: setup demo-key  ## run the sample finance routes on the embedded broker (no RabbitMQ needed)
	$(BIN)/esb $(DEMO) demo

demo-key: setup  ## the demo's SFTP client key (config/demo.env names it; never the bank's key)
	@test -f $(DEMO_KEY) || { mkdir -p $(dir $(DEMO_KEY)) && $(BIN)/python -c \
	  "import paramiko, sys; paramiko.RSAKey.generate(3072).write_private_key_file(sys.argv[1])" $(DEMO_KEY); }

test: setup services demo-key  ## install, start what must run, run every test and every route test
	$(BIN)/esb $(DEMO) routes validate
	$(BIN)/esb $(DEMO) routes test
	$(BIN)/python -m pytest -q

unit: setup services  ## unit tests only (need Redis and PostgreSQL for the store contract)
	$(BIN)/python -m pytest -q tests/unit

lint: setup  ## ruff
	$(BIN)/ruff check esb tests bench

bench: setup services  ## throughput and latency: esb against a hand-written raw-client baseline
	$(BIN)/python -m bench

soak: setup services  ## long fault and soak runs, then the RSS soak (not part of make test)
	$(BIN)/python -m pytest -q -m soak
	$(BIN)/python -m bench --soak

soak-rss: setup services  ## the RSS soak alone: 1,000,000 messages through 1 esb worker, RSS flat after 50,000
	$(BIN)/python -m bench --soak

cluster-test: setup services  ## 3 RabbitMQ nodes, 2 esb machines, PostgreSQL; kills a node and a machine (root, ~3 min; not in make test)
	$(BIN)/python tests/cluster/run.py

deploy-docs: setup  ## rewrite the ESB_* settings table (deploy/README.md) and deploy/esb.env from the config schema
	$(BIN)/python -m esb.loading.settings_table --write deploy/README.md deploy/esb.env

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) var .pytest_cache .hypothesis
