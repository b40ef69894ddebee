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

# Demo settings: small enough for 2 CPU cores in a few minutes, large enough to beat copy-last-frame.
DEMO_MODEL ?= ms-convlstm
DEMO_ARGS ?= --hidden 16 --batch-size 4 --max-train-clips 480 --max-eval-clips 32 --lr 1e-3 --seed 0

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt $(PLUGINS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]' $(foreach p,$(PLUGINS),-e '$(dir $(p))$(TEST_EXTRA)')
	touch $(STAMP)

demo: install
	$(BIN)/msrnn-zoo train $(DEMO_MODEL) --dataset moving-mnist --source synthetic --out $(DEMO)/run --force $(DEMO_ARGS)
	$(BIN)/msrnn-zoo evaluate $(DEMO)/run --force
	$(BIN)/msrnn-zoo predict $(DEMO)/run --out $(DEMO)/forecast.gif --force

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python benchmarks/step_time.py

clean:
	rm -rf $(DEMO) .pytest_cache
