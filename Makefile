# Digit Recognizer kit. `make` (or `make help`) lists the targets.
# Every target runs inside .venv, which is made on first use and refreshed when pyproject.toml changes.

.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KIT := $(BIN)/python -m kit

# Hyperparameters: empty means "the preset's value". Example: make train PRESET=best EPOCHS=20
PRESET ?= default
EPOCHS ?=
LR ?=
BATCH ?=
HIDDEN ?=
CHANNELS ?=
ARCH ?=
OPTIMIZER ?=
SCHEDULE ?=
WEIGHT_DECAY ?=
DROPOUT ?=
BATCH_NORM ?=
AUGMENT ?=
LABEL_SMOOTHING ?=
PATIENCE ?=
REFIT ?=
ENSEMBLE ?=
TTA ?=
SEED ?=
VAL_FRACTION ?=
THREADS ?=
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
SPACE ?= sweeps/default-mlp.toml
TRIALS ?=

opt = $(if $(strip $(2)),$(1) $(2))
TRAIN_FLAGS = --preset $(PRESET) $(call opt,--epochs,$(EPOCHS)) $(call opt,--lr,$(LR)) \
	$(call opt,--batch,$(BATCH)) $(call opt,--hidden,$(HIDDEN)) $(call opt,--channels,$(CHANNELS)) \
	$(call opt,--arch,$(ARCH)) $(call opt,--optimizer,$(OPTIMIZER)) $(call opt,--schedule,$(SCHEDULE)) \
	$(call opt,--weight-decay,$(WEIGHT_DECAY)) $(call opt,--dropout,$(DROPOUT)) \
	$(call opt,--batch-norm,$(BATCH_NORM)) $(call opt,--augment,$(AUGMENT)) \
	$(call opt,--label-smoothing,$(LABEL_SMOOTHING)) $(call opt,--patience,$(PATIENCE)) \
	$(call opt,--refit,$(REFIT)) $(call opt,--ensemble,$(ENSEMBLE)) $(call opt,--tta,$(TTA)) \
	$(call opt,--seed,$(SEED)) $(call opt,--val-fraction,$(VAL_FRACTION)) $(call opt,--threads,$(THREADS))

.PHONY: help venv demo data train submit validate upload check test bench sweep clean

help: ## list the targets and the variables they take
	@echo "Digit Recognizer kit — targets:"
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z]+):.*## (.*)/  make \1\t\2/' | expand -t 22
	@echo ""
	@echo "Variables (empty = the preset's value):"
	@echo "  PRESET=default|reference|best  EPOCHS= LR= BATCH= HIDDEN=128,64 CHANNELS=32,64 ARCH=mlp|cnn"
	@echo "  OPTIMIZER=sgd|momentum|nesterov|adam|adamw  SCHEDULE=constant|step|cosine|warmup_cosine|onecycle|plateau"
	@echo "  WEIGHT_DECAY= DROPOUT= BATCH_NORM=0|1 AUGMENT=0|1 LABEL_SMOOTHING= PATIENCE= REFIT=0|1"
	@echo "  ENSEMBLE= TTA=0|1 SEED= VAL_FRACTION= THREADS=0(auto)|1|2"
	@echo "  TRAIN=$(TRAIN) TEST=$(TEST) MODEL=$(MODEL) OUT=$(OUT)"
	@echo "  make data: COMPETITION=$(COMPETITION) FORCE=1 ZIP=path.zip   make upload: FILE=$(FILE) MESSAGE= WAIT=$(WAIT)"
	@echo "  make bench: PART=speed|accuracy|all|sweep SEEDS=$(SEEDS) PRESETS=$(PRESETS) JOBS=$(JOBS)"
	@echo "  make sweep: SPACE=$(SPACE) TRIALS= JOBS=$(JOBS) PRESET= (the base); DASK_SCHEDULER=tcp://host:8786 for a cluster"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## make or refresh the virtual environment

demo: $(STAMP) ## train and submit on the bundled real sample (offline, about a minute)
	$(KIT) demo $(call opt,--epochs,$(EPOCHS)) $(call opt,--seed,$(SEED))

data: $(STAMP) ## download the competition files into data/ (Kaggle credentials needed; ZIP= for a local archive)
	$(KIT) data --competition $(COMPETITION) $(if $(filter 1 yes true,$(FORCE)),--force) $(call opt,--zip,$(ZIP))

train: $(STAMP) ## train on data/train.csv, keep the best epoch, save the run under models/
	$(KIT) train --train $(TRAIN) $(TRAIN_FLAGS)

submit: $(STAMP) ## predict data/test.csv with the latest run (or MODEL=) and write submissions/submission.csv
	$(KIT) submit --model $(MODEL) --test $(TEST) --out $(OUT) $(call opt,--tta,$(TTA))

validate: $(STAMP) ## score the latest run (or MODEL=) again on its validation rows, without and with TTA
	$(KIT) validate --model $(MODEL) --train $(TRAIN) $(call opt,--tta,$(TTA))

upload: $(STAMP) ## send submissions/submission.csv (or FILE=) to the leaderboard
	$(KIT) upload --file $(FILE) --competition $(COMPETITION) --wait $(WAIT) $(if $(MESSAGE),--message "$$MESSAGE")

check: $(STAMP) ## check a submission's format (FILE=)
	$(KIT) check $(FILE)

test: $(STAMP) ## run the test suite (offline, no credentials needed)
	$(BIN)/python -m pytest -q

bench: $(STAMP) ## measure speed and accuracy on data/train.csv; tables go to bench/
	$(KIT) bench --train $(TRAIN) --part $(PART) --seeds $(SEEDS) --presets $(PRESETS) --jobs $(JOBS)

sweep: $(STAMP) ## train one run per trial of SPACE= (JOBS= processes, or DASK_SCHEDULER=), rank them; resumes
	$(KIT) sweep --train $(TRAIN) --space $(SPACE) $(call opt,--trials,$(TRIALS)) --jobs $(JOBS) $(TRAIN_FLAGS)

clean: ## remove the virtual environment, caches and the demo's files (not data/, models/ or submissions/)
	rm -rf $(VENV) .pytest_cache data/.cache data/demo models/demo submissions/demo
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
