# The README's two set-up commands are `make demo` and `make test`; each creates .venv when missing and
# installs everything (torch/torchvision pinned in pyproject.toml).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.visionlab-installed

.PHONY: setup demo test test-avx2 lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The tour (scripts/demo.sh): fetch Fashion-MNIST, train SimpleNet, evaluate, saliency, PGD attack, HTML report;
# prints each stage's time and the report's path. Every run writes a new runs/demo-<date>-<time>/.
demo: setup
	scripts/demo.sh $(BIN)/visionlab

test: setup
	$(BIN)/python -m pytest -q

# The suite again on PyTorch's and MKL's AVX2 kernels, the ones a CPU without AVX-512 runs: a test that passes only
# by one kernel's rounding fails on one of the two runs. (On a CPU without AVX-512 both runs use AVX2.)
test-avx2: export ATEN_CPU_CAPABILITY = avx2
test-avx2: export MKL_ENABLE_INSTRUCTIONS = AVX2
test-avx2: setup
	$(BIN)/python -c "import torch; print('ATen CPU capability:', torch.backends.cpu.get_cpu_capability())"
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf runs build *.egg-info
