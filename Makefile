# The README's two set-up commands are `make demo` and `make test`; each creates .venv when missing and
# installs everything (torch/torchvision pinned in pyproject.toml).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.visionlab-installed

.PHONY: setup demo test lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Fetches Fashion-MNIST when missing, trains SimpleNet on it, evaluates on the 10k test images.
demo: setup
	$(BIN)/visionlab train --data fashion-mnist --model simplenet --out runs/demo-simplenet-fashion-mnist

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf runs build *.egg-info
