# Two commands set everything up: `make repro` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: repro test study sweep sweep-unet sweep-stacked sweep-unlabeled reports show bench format

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

repro: $(BIN)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

study: $(BIN)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sfae study

sweep: $(BIN)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sfae sweep

sweep-unet: $(BIN)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sfae sweep --arch unet

sweep-stacked: $(BIN)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sfae sweep --name unet_stacked

sweep-unlabeled: $(BIN)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sfae sweep --name unet_unlabeled

reports: $(BIN)/.installed
	$(BIN)/sfae reports

# The experiments in at most 25 columns: the params and headline scores that differ.
SHOWN := ^(Experiment|State|variant|seed|data\.val_count|model\.arch|model\.unet\.(width|epochs)|variants\..*\.(regularizer_scale|sparse\.weight|dropout|sparse\.unlabeled_frames)|val\.iou_pooled|test\.pooled\.(iou|boundary_f1)|gap\.iou_pooled|head_hit_rate)$$
show: $(BIN)/.installed
	$(BIN)/dvc exp show --only-changed --drop '.*' --keep '$(SHOWN)'

bench: $(BIN)/.installed
	$(BIN)/python bench/train_speed.py --epochs 20

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder  # two workers, whole files

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
