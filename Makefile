# Two commands do all the set-up: `make demo` and `make test`. Both create .venv if missing and install
# the core and every plugin under plugins/ (editable), with torch pinned through constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := $(sort $(wildcard plugins/*/pyproject.toml))
STAMP := $(VENV)/.installed
# A plugin whose pyproject declares a `test` extra (optional dependencies its tests exercise, such as
# msrnn-germany's pysteps baseline) is installed with it, so CI tests what users can install.
TEST_EXTRA = $(if $(shell grep -ls '^test = ' $(p)),[test])
DEMO ?= demo

# Demo settings: Moving MNIST's `small` protocol (32x32, 5 -> 5), 500 steps of batch 8, so that 2 CPU cores
# learn to follow the digits in minutes (README: the numbers and the command that measured them).
DEMO_MODEL ?= ms-convlstm
DEMO_ARGS ?= --protocol small --hidden 16 --batch-size 8 --epochs 2 --max-eval-clips 128 --lr 3e-3 --seed 0

.PHONY: install demo test test-torch lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt $(PLUGINS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]' $(foreach p,$(PLUGINS),-e '$(dir $(p))$(TEST_EXTRA)')
	touch $(STAMP)

# The demo installs only what it runs (the core, its cell, Moving MNIST): a fresh clone shows a forecast in
# minutes. After `make install` or `make test` everything is there already.
DEMO_PLUGINS ?= plugins/msrnn-convlstm plugins/msrnn-moving-mnist
DEMO_STAMP := $(VENV)/.installed-demo

$(DEMO_STAMP): pyproject.toml constraints.txt $(DEMO_PLUGINS:%=%/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -f $(STAMP) || $(BIN)/python -m pip install -q -c constraints.txt -e . $(foreach p,$(DEMO_PLUGINS),-e $(p))
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/msrnn-zoo train $(DEMO_MODEL) --dataset moving-mnist --source synthetic --out $(DEMO)/run --force $(DEMO_ARGS)
	$(BIN)/msrnn-zoo evaluate $(DEMO)/run --force
	$(BIN)/msrnn-zoo predict $(DEMO)/run --out $(DEMO)/forecast.gif --force

# The suite runs in one process per core (pytest-xdist; at most 8, each imports torch): on the 2-core build
# machine, at an earlier commit, 356 s against 626 s in one process (README: the latest count and time).
# `PYTEST_ARGS=-n0 make test` runs it in one process.
PYTEST_ARGS ?= -n auto --maxprocesses 8

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The compiled paths under another PyTorch in a venv of its own: the GPU machines run torch 2.11, whose Dynamo
# failed three ways that 2.14 (constraints.txt) does not (docs/speed.md). The first run downloads about 4 GB.
#   make test-torch TORCH=2.11.0 TORCHVISION=0.26.0
TORCH ?= 2.11.0
TORCHVISION ?= 0.26.0
TORCH_VENV = .venv-torch$(TORCH)

test-torch:
	test -x $(TORCH_VENV)/bin/python || $(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install -q --upgrade pip setuptools
	$(TORCH_VENV)/bin/python -m pip install -q torch==$(TORCH) torchvision==$(TORCHVISION) -e '.[dev]' \
		$(foreach p,$(PLUGINS),-e '$(dir $(p))')
	$(TORCH_VENV)/bin/python -m pytest -p no:cacheprovider tests/test_fast_path.py tests/test_clip_graph.py \
		plugins/msrnn-predrnn-v2/tests

# mypy checks the hints users' type checkers read (py.typed); its settings are pyproject's [tool.mypy]. Not in
# `test`: it takes a minute, and the suite's time is what the README states.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/step_time.py --clock process

clean:
	rm -rf $(DEMO) .pytest_cache
