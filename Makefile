# `make help` lists the targets. The first target that needs the environment creates
# .venv/ and installs the project into it (EXTRAS=gpu,dev for TensorFlow with CUDA).
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(VENV)/bin/python
EXTRAS ?= cpu,dev
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run quick reproduce distributed tracking-server ui serve test test-full lint \
	format bench-report dataset clean
# The store and the model come from conf/ (mlflow.tracking_uri, which MLFLOW_TRACKING_URI
# overrides, and final.model_name's champion); STORE=... or MODEL=... picks others.
# Recursive (=) so that they are composed only by the targets that use them.
STORE ?= $(shell $(PYTHON) -m src.config.compose mlflow.tracking_uri)
MODEL ?= $(shell $(PYTHON) -m src.registry champion-uri)
UI_PORT ?= 5000
SERVE_PORT ?= 5001
WORKERS ?= 2
TRACKING_PORT ?= 5002
TRACKING_HOST ?= 127.0.0.1
# 1: MLflow's basic-auth app (required with a TRACKING_HOST beyond loopback).
TRACKING_AUTH ?= 0

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP) ## Create .venv/ and install the project with its dependencies

run: $(STAMP) ## Run a search (default config; pass overrides as ARGS="tuner=bayesian ...")
	$(PYTHON) -m src.run $(ARGS)

quick: $(STAMP) ## A smoke search in well under a minute (experiment=quick)
	$(PYTHON) -m src.run experiment=quick $(ARGS)

# DATA=mnist: the full-MNIST variant (after `make reproduce`, with full MNIST reachable:
# MNIST_IDX_FOLDER=folder of the official IDX files, or Keras' cache).
DATA ?= mnist_10k
FAST_STUDY_BEST := outputs/reproduce/2_cnn_plus/final/final.json

reproduce: $(STAMP) ## Rerun the whole study and write docs/results.md (DATA=mnist: on full MNIST)
ifeq ($(DATA),mnist)
	@test -f $(FAST_STUDY_BEST) || { echo "error: no $(FAST_STUDY_BEST): run make reproduce first" >&2; exit 1; }
	rm -rf outputs/reproduce_full
	$(PYTHON) -m src.run -m experiment=reproduce_full $(ARGS)
	$(PYTHON) -m src.final.study outputs/reproduce_full --doc docs/results.md --section reproduce-full \
		--record docs/data/study_$(DATA).json
else
	rm -rf outputs/reproduce
	$(PYTHON) -m src.run -m experiment=reproduce $(ARGS)
	$(PYTHON) -m src.final.study outputs/reproduce --doc docs/results.md \
		--record docs/data/study_$(DATA).json
endif

distributed: $(STAMP) ## One search over a chief and WORKERS workers into PostgreSQL + MLflow server
	$(PYTHON) -m src.scaleout.cluster --workers $(WORKERS) -- $(ARGS)

tracking-server: $(STAMP) ## MLflow server on PostgreSQL at http://127.0.0.1:5002 (TRACKING_PORT=...)
	$(PYTHON) -m src.scaleout.services tracking-server --host $(TRACKING_HOST) --port $(TRACKING_PORT) \
		$(if $(filter 1,$(TRACKING_AUTH)),--auth)

ui: $(STAMP) ## Open the MLflow UI on the runs' store (http://127.0.0.1:5000; UI_PORT=... to change)
	@mkdir -p mlruns
	@echo "MLflow UI at http://127.0.0.1:$(UI_PORT) (store $(STORE)); Ctrl-C stops it"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --backend-store-uri "$(STORE)" \
		--host 127.0.0.1 --port $(UI_PORT) --workers 1

serve: $(STAMP) ## Serve the champion model at http://127.0.0.1:5001/invocations (MODEL=... SERVE_PORT=...)
	@echo "Serving $(MODEL) at http://127.0.0.1:$(SERVE_PORT)/invocations; Ctrl-C stops it"
	MLFLOW_TRACKING_URI="$(STORE)" $(PYTHON) -m src.registry.server -m "$(MODEL)" --host 127.0.0.1 --port $(SERVE_PORT)

# Two xdist workers, one test module each at a time (module fixtures are built once).
PYTEST := $(PYTHON) -m pytest -n 2 --dist loadscope

test: $(STAMP) ## Run the default test suite (offline, about 3 minutes on 2 cores)
	$(PYTEST) $(ARGS)

test-full: $(STAMP) ## Run every test, the slow ones too (what CI runs)
	$(PYTEST) -m "slow or not slow" $(ARGS)

lint: $(STAMP) ## Lint and check formatting with ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## Format the code with ruff (what `make lint` checks)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench-report: $(STAMP) ## Rebuild the benchmark tables of README.md and docs/benchmarks.md from docs/data/*.json
	$(PYTHON) bench/report.py

dataset: $(STAMP) ## Rebuild src/data/mnist_10k.npz from the official files (IDX=folder, else Keras' download)
	$(PYTHON) -m src.data.build_mnist_10k $(if $(IDX),--idx $(IDX))

clean: ## Remove run outputs (outputs/); keeps .venv/ and mlruns/
	rm -rf outputs
