# Digit Recognizer kit. `make` (or `make help`) lists the targets.
# Every target runs inside .venv, which is made on first use and refreshed when pyproject.toml changes.

.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KIT := $(BIN)/python -m kit

# Hyperparameters: every field of kit/config.py's Config is a variable (`make help` lists them),
# e.g. make train PRESET=best EPOCHS=20. Make hands command-line variables to the recipe's
# environment; `--make-vars "$(CMDLINE_VARS)"` tells `kit` which names were given on the command
# line, and it reads only those: a SEED= or LR= merely exported in the shell changes nothing.
CMDLINE_VARS = $(strip $(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(v))))
# Files and Kaggle
TRAIN ?= data/train.csv
TEST ?= data/test.csv
MODEL ?= models
OUT ?= submissions/submission.csv
COMPETITION ?= digit-recognizer
FORCE ?=
ZIP ?=
FILE ?= submissions/submission.csv
MESSAGE ?=
export MESSAGE  # read by the recipe from the environment, so quotes in it stay text
WAIT ?= 60
SEEDS ?= 3
PRESETS ?= reference,default,best
PART ?= all
JOBS ?= 1
# make export / make submit ONNX=
QUANTIZE ?=
ONNX ?=
given = $(if $(filter-out file default undefined,$(origin $(1))),$(2) $($(1)))
# make train: REPORT=0 skips the report; make runs: the folder of runs and the uploads it joins
REPORT ?=
MODELS ?= models
UPLOADS ?= submissions/history.csv
# make serve
HOST ?= 127.0.0.1
PORT ?= 8000
SPACE ?= sweeps/default-mlp.toml
TRIALS ?=

opt = $(if $(strip $(2)),$(1) $(2))

.PHONY: help venv demo data train submit validate upload check lint test test-fast bench serve sweep clean export report runs

help: ## list the targets and the variables they take
	@echo "Digit Recognizer kit — targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  make \1\t\2/' | expand -t 22
	@echo ""
	@echo "Files: TRAIN=$(TRAIN) TEST=$(TEST) MODEL=$(MODEL) OUT=$(OUT)   make train: RESUME=<run-id> continues a stopped run"
	@echo "make data: COMPETITION=$(COMPETITION) FORCE=1 ZIP=path.zip   make upload: FILE=$(FILE) MESSAGE= WAIT=$(WAIT)"
	@echo "make export: MODEL= OUT=models/<run>/model.onnx QUANTIZE=1   make submit: ONNX=path/model.onnx"
	@echo "make train: REPORT=0 (no report)   make report: MODEL=   make runs: MODELS=$(MODELS) UPLOADS=$(UPLOADS)"
	@echo "make serve: MODEL=$(MODEL) HOST=$(HOST) PORT=$(PORT)"
	@echo "make sweep: SPACE=$(SPACE) TRIALS= JOBS=$(JOBS) PRESET= (the base); DASK_SCHEDULER=tcp://host:8786 for a cluster"
	@echo "make bench: PART=speed|accuracy|all|onnx|serve|sweep SEEDS=$(SEEDS) PRESETS=$(PRESETS) JOBS=$(JOBS)   make demo: PRESET= EPOCHS= ... (any training variable)"
	@echo ""
	@if [ -x $(BIN)/python ]; then $(KIT) config --make-help; \
	else echo "Hyperparameters: run \`make venv\` and \`make help\` again to list them (or see README.md)."; fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## make or refresh the virtual environment

demo: $(STAMP) ## train, submit and report on the bundled real sample, offline; takes the training variables
	$(KIT) demo --make-vars "$(CMDLINE_VARS)"

data: $(STAMP) ## download the competition files into data/ (Kaggle credentials needed; ZIP= for a local archive)
	$(KIT) data --competition $(COMPETITION) $(if $(filter 1 yes true,$(FORCE)),--force) $(call opt,--zip,$(ZIP))

train: $(STAMP) ## train on data/train.csv, keep the best epoch, save the run under models/
	$(KIT) train --train $(TRAIN) --make-vars "$(CMDLINE_VARS)" $(call opt,--resume,$(RESUME)) \
		$(if $(REPORT),--report $(REPORT))

submit: $(STAMP) ## predict data/test.csv with the latest run (or MODEL=) and write submissions/submission.csv
	$(KIT) submit --model $(MODEL) --test $(TEST) --out $(OUT) $(call opt,--tta,$(TTA)) $(call opt,--onnx,$(ONNX))

export: $(STAMP) ## write the latest run (or MODEL=) as models/<run>/model.onnx (or OUT=); QUANTIZE=1 adds model.int8.onnx
	$(KIT) export --model $(MODEL) $(call given,OUT,--out) $(call opt,--quantize,$(QUANTIZE)) \
		$(call given,TRAIN,--train) $(call opt,--tta,$(TTA))

validate: $(STAMP) ## score the latest run (or MODEL=) again on its validation rows, without and with TTA
	$(KIT) validate --model $(MODEL) --train $(TRAIN) $(call opt,--tta,$(TTA))

upload: $(STAMP) ## send submissions/submission.csv (or FILE=) to the leaderboard
	$(KIT) upload --file $(FILE) --competition $(COMPETITION) --wait $(WAIT) $(if $(MESSAGE),--message "$$MESSAGE")

report: $(STAMP) ## write report.html (curves, confusion matrix, mistakes) for the latest run (or MODEL=)
	$(KIT) report --model $(MODEL)

runs: $(STAMP) ## list every run under models/ (or MODELS=) with validation and leaderboard scores; writes runs.html
	$(KIT) runs --models $(MODELS) --uploads $(UPLOADS)

check: $(STAMP) ## check a submission's format (FILE=)
	$(KIT) check $(FILE)

lint: $(STAMP) ## ruff: the lint rules and the formatting of kit/, tests/ and tools/ (part of make test)
	$(BIN)/ruff check kit tests tools
	$(BIN)/ruff format --check kit tests tools

test: lint ## the lint, then the whole test suite (offline, no credentials needed)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP) ## the tests without subprocesses, parallel runs, the bench, browsers or clusters
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP) ## measure speed and accuracy on data/train.csv; tables go to bench/
	$(KIT) bench --train $(TRAIN) --part $(PART) --seeds $(SEEDS) --presets $(PRESETS) --jobs $(JOBS) $(call given,MODEL,--model)

serve: $(STAMP) ## a web page to draw digits on, read by the latest run (or MODEL=); Ctrl-C stops
	$(KIT) serve --model $(MODEL) --host $(HOST) --port $(PORT)

sweep: $(STAMP) ## train one run per trial of SPACE= (JOBS= processes, or DASK_SCHEDULER=), rank them; resumes
	$(KIT) sweep --train $(TRAIN) --space $(SPACE) $(call opt,--trials,$(TRIALS)) --jobs $(JOBS) \
		--make-vars "$(CMDLINE_VARS)"

clean: ## remove the virtual environment, caches and the demo's files (not data/, models/ or submissions/)
	rm -rf $(VENV) .pytest_cache data/.cache data/demo models/demo submissions/demo
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
