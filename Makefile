# The book's two commands: `make lab` (set up, open the book) and `make test` (set up, run every test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=
# Jupyter refuses to start as root (containers, CI) unless told to
ROOT_FLAG := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb)) $(sort $(wildcard notebooks/solutions/*.ipynb))

.PHONY: setup lab test lint unit nbval notebooks figures bench format clean

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

setup: $(STAMP)

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ROOT_FLAG) $(ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks notebooks
	$(BIN)/ruff format --check src tests benchmarks notebooks

unit: setup
	$(BIN)/python -m pytest tests -q -n 2 --disable-socket --allow-unix-socket

nbval: setup
	$(BIN)/python -m pytest --nbval -q -n 2 --dist loadfile --nbval-sanitize-with tests/nbval_sanitize.cfg $(NOTEBOOKS)

test: lint unit nbval

notebooks: setup
	$(BIN)/python -m nexttoken.execute $(NOTEBOOKS)

figures: setup
	$(BIN)/python -m nexttoken.figures figures

bench: setup
	$(BIN)/python benchmarks/decode.py

format: setup
	$(BIN)/ruff check --fix src tests benchmarks notebooks
	$(BIN)/ruff format src tests benchmarks notebooks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
