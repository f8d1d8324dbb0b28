# CHT Bridge: the two commands a new machine needs are `make demo` and `make test`.
# Needs only Python 3.11, Node.js and npm; everything else is installed into .venv and
# standins/node_modules by the targets below.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STANDINS_NODE := standins/node_modules/.installed
DOCS ?= 100000

export PYTHONPATH := $(CURDIR):$(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False

.PHONY: demo test bench airflow lint install constraints clean cluster cluster-stop cluster-status cluster-clean test-cluster bench-cluster

$(BIN)/.installed: requirements.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $@

$(STANDINS_NODE): standins/package.json standins/package-lock.json
	cd standins && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed $(STANDINS_NODE)

## Run every example pipeline as a real Airflow DAG run against a local CHT and receiver.
demo: install
	$(BIN)/python -m standins.demo

## The whole test suite (CI runs this).
test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

## Throughput and memory: DOCS documents end to end (make bench DOCS=1000000); then patient
## matching: accuracy and speed on synthetic East-African lists (5k incoming vs 5k and 100k); then the
## CHT Bridge page's answers for 50 pipelines and a ledger of 1M rows.
bench: install
	$(BIN)/python -m bench.pipeline --docs $(DOCS)
	$(BIN)/python -m bench.fhir
	$(BIN)/python -m bench.matching
	$(BIN)/python -m bench.matching --existing 5000 --cht-dates
	$(BIN)/python -m bench.matching_public
	$(BIN)/python -m bench.openmrs
	$(BIN)/python -m bench.dhis2 --reports $(DOCS)
	$(BIN)/python -m bench.ui --pipelines 50 --rows 1000000
	$(BIN)/python -m bench.dhis2 --in-process --reports 1000000

## Airflow UI on http://localhost:8080 with the local stand-in CHT, receiver and connections.
airflow: install
	$(BIN)/python -m standins.standalone

## docker-compose.yaml's CeleryExecutor deployment natively, without Docker (standins/cluster.py):
## PostgreSQL + Redis from apt (postgresql, redis-server), api-server on http://127.0.0.1:8095,
## scheduler, dag-processor, triggerer, two Celery workers, the sandbox CHT/receiver/FHIR.
cluster: install
	$(BIN)/python -m standins.cluster start

## Stop every process `make cluster` started (pid files in .sandbox/cluster/run).
cluster-stop:
	$(BIN)/python -m standins.cluster stop

cluster-status:
	$(BIN)/python -m standins.cluster status

## Stop the cluster and forget it (databases, sandbox, logs): the next `make cluster` starts fresh.
cluster-clean: cluster-stop
	rm -rf .sandbox/cluster

## The scale test on a fresh running cluster (make cluster-clean cluster first): 20 pipelines + a split
## backfill with a worker killed, and review questions answered through the api-server.
test-cluster: install
	$(BIN)/python -m pytest -m cluster tests/cluster

## The 20 pipelines with one worker and with two; a split backfill against one task (BENCH_DOCS documents,
## served from SQLite with CouchDB's answers: pouchdb-server cannot index a million in time).
BENCH_DOCS ?= 1000000
bench-cluster: install
	$(BIN)/python -m bench.cluster --docs $(BENCH_DOCS) --server sqlite

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

constraints: $(BIN)/.installed
	{ echo "# Every resolved version, from 'pip freeze' of a working environment (make constraints)."; \
	  $(BIN)/pip freeze --exclude-editable; } > constraints.txt

clean:
	rm -rf .sandbox .airflow out
