# The README's two set-up commands are `make demo` and `make test`; each creates .venv when missing and
# installs everything (torch/torchvision pinned in pyproject.toml).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.visionlab-installed

.PHONY: setup demo test test-avx2 test-threads lint format docs bench clean mutate

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The tour (scripts/demo.sh): fetch Fashion-MNIST, train SimpleNet, evaluate, saliency, PGD attack, robustness
# sweep, custom vs native conv (a shortened run trained with each), HTML report; prints each stage's time and the
# report's path. Every run writes a new runs/demo-<date>-<time>/.
demo: setup
	scripts/demo.sh $(BIN)/visionlab

# One pytest-xdist worker per core (at most 4), each computing on one thread (tests/conftest.py), idle workers
# taking tests from busy ones: on 2 cores 1450 tests took 92 s instead of 131 s in one process (2026-11-26).
# TEST_JOBS=0 runs the suite in one process.
TEST_JOBS ?= auto
PYTEST := $(BIN)/python -m pytest -q $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --maxprocesses 4 --dist worksteal)

test: setup
	$(PYTEST)

# The suite again on PyTorch's and MKL's AVX2 kernels, the ones a CPU without AVX-512 runs: a test that passes only
# by one kernel's rounding fails on one of the two runs. (On a CPU without AVX-512 both runs use AVX2.)
test-avx2: export ATEN_CPU_CAPABILITY = avx2
test-avx2: export MKL_ENABLE_INSTRUCTIONS = AVX2
test-avx2: setup
	$(BIN)/python -c "import torch; print('ATen CPU capability:', torch.backends.cpu.get_cpu_capability())"
	$(PYTEST)

# The statistical tests (asserting on training or a random draw: tests/statistical.py, docs/TESTING.md) again at two
# intra-op threads, on the default and on the AVX2 kernels: `make test` gives each worker one thread, and a sum split
# over two threads rounds differently. Their thresholds are measured by bench/statistical_tests.py.
test-threads: setup
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q -p no:xdist -m statistical
	OMP_NUM_THREADS=2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 $(BIN)/python -m pytest -q -p no:xdist -m statistical

# ruff, then the layer contract of pyproject.toml ([tool.importlinter]: nothing imports upward).
lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# The documentation site (mkdocs.yml) into site/: the Python API reference generated from the docstrings
# (mkdocstrings reads the source, imports nothing), the examples, the CLI reference. Its tools live in their own
# environment, .venv-docs, pinned in docs/requirements.txt (see there why not in .venv). --strict: any warning (a
# docstring argument missing from the signature, a broken link or snippet) fails the build. NO_MKDOCS_2_WARNING
# silences mkdocs-material's end-of-life banner (not a build warning).
DOCS_VENV ?= .venv-docs
DOCS_STAMP := $(DOCS_VENV)/.visionlab-docs-installed

$(DOCS_STAMP): docs/requirements.txt
	test -x $(DOCS_VENV)/bin/python || $(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DOCS_VENV)/bin/python -m pip install --quiet -r docs/requirements.txt
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict

# Mutation testing (docs/TESTING.md); not part of `make test` or CI. MODULE's mutants (a folder or one file under
# src/visionlab) meet the tests of its mirror folder (src/visionlab/ops -> tests/ops), or TESTS (paths; `tests` for
# the whole suite); each mutant only the tests that reach the mutated function.
MODULE ?= src/visionlab/ops
MODULE_ := $(patsubst %/,%,$(MODULE))
TESTS  ?= $(if $(filter main.py,$(MODULE_)),tests/test_main.py,$(patsubst src/visionlab%,tests%,$(patsubst %/,%,$(if $(filter %.py,$(MODULE_)),$(dir $(MODULE_)),$(MODULE_)))))
# MUTANTS: mutmut name patterns, default every mutant of MODULE (e.g. 'visionlab.engine.trainer.xǁTrainerǁ_ema_is_best*').
# JOBS: mutants run at once (1 while anything else computes; 2 uses both cores of an idle machine).
JOBS ?= 1
MUTANTS ?= $(subst /,.,$(patsubst src/%,%,$(basename $(MODULE_)))).*

mutate: setup
	$(BIN)/python -m pip install --quiet -e '.[dev,mutate]'
	rm -rf mutants
	OMP_NUM_THREADS=1 PYTEST_ADDOPTS="$$($(BIN)/python -c "$$IGNORE_ALL_BUT" $(TESTS))" \
	    $(BIN)/mutmut run --max-children $(JOBS) $(foreach m,$(MUTANTS),'$(m)')
	$(BIN)/mutmut results | grep -v ': not checked' || true

# `--ignore=` for every test file or folder outside the paths in $(TESTS) (none when they include tests/).
define IGNORE_ALL_BUT
import sys; from pathlib import Path
keep = {Path(a) for a in sys.argv[1:]}; up = {p for t in keep for p in t.parents}
walk = lambda d: [x for p in sorted(d.iterdir()) if p.name not in ('__init__.py', 'conftest.py', '__pycache__')
                  for x in (walk(p) if p in up else [] if p in keep else ['--ignore=' + str(p)])]
print(' '.join(walk(Path('tests')) if Path('tests') not in keep else []))
endef
export IGNORE_ALL_BUT

clean:
	rm -rf runs build *.egg-info mutants site
