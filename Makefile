# The book's two commands: `make lab` (set up, open the book) and `make test` (set up, run every test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=
# Jupyter refuses to start as root (containers, CI) unless told to
ROOT_FLAG := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb)) $(sort $(wildcard notebooks/solutions/*.ipynb))
# nbval on 2 workers: the costliest notebooks first (longest-first scheduling), so that no worker
# idles at the end while the other runs a long one; then the rest in order. Plugins that notebooks
# never use are not loaded (each costs seconds of start-up in every worker).
HEAVY_FIRST := 12 08 11 13 14 07 09 10
# Chapters whose solutions notebook holds every cell of the chapter (tests/test_other_cpu_coverage.py):
# the simulated-CPU passes run only the solutions of these, which check the same outputs.
COVERED_BY_SOLUTIONS := 06 07 08 09 10 11 12 13 14
NBVAL_ORDER := $(foreach n,$(HEAVY_FIRST),$(wildcard notebooks/solutions/$(n)_*.ipynb notebooks/$(n)_*.ipynb))
NBVAL_NOTEBOOKS := $(NBVAL_ORDER) $(filter-out $(NBVAL_ORDER),$(NOTEBOOKS))
NBVAL := -m pytest --nbval -q -n 2 --dist loadfile --no-loadscope-reorder -p no:hypothesispytest -p no:typeguard -p no:jaxtyping -p no:anyio --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: setup lab test lint unit nbval other-cpus notebooks figures bench format clean site site-check

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

setup: $(STAMP)

lab: setup
	@$(BIN)/jupyter trust $(NOTEBOOKS) >/dev/null  # trusted: their saved widgets show before Run all
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ROOT_FLAG) $(ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks notebooks website
	$(BIN)/ruff format --check src tests benchmarks notebooks website

unit: setup
	$(BIN)/python -m pytest tests -q -n 2 --disable-socket --allow-unix-socket --ignore=tests/browser

nbval: setup
	$(BIN)/python $(NBVAL) $(NBVAL_NOTEBOOKS)

# Other CPUs, simulated on this one (CONTRIBUTING.md, "Numbers that hold on any CPU"): torch's own
# kernels (ATen), MKL and oneDNN are forced down to the instruction sets of an AVX2-only CPU (an AMD
# EPYC, an older Intel) and of a CPU with neither AVX2 nor AVX-512; every notebook and the figures
# must still pass (a chapter in COVERED_BY_SOLUTIONS through its solutions, which hold its cells).
# tests/test_cpu_simulation.py checks that torch really took the setting.
CPU_AVX2    := ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 NEXTTOKEN_SIMULATED_CPU=avx2
CPU_DEFAULT := ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41 NEXTTOKEN_SIMULATED_CPU=default
OTHER_CPU_TESTS := tests/test_cpu_simulation.py tests/test_figures.py
# every notebook, except the chapters whose solutions hold all their cells (COVERED_BY_SOLUTIONS)
OTHER_CPU_NOTEBOOKS := $(filter-out $(foreach n,$(COVERED_BY_SOLUTIONS),notebooks/$(n)_%.ipynb),$(NBVAL_NOTEBOOKS))

other-cpus: setup
	@echo "== simulated CPU: AVX2 only (as an AMD EPYC)"
	env $(CPU_AVX2) $(BIN)/python $(NBVAL) $(OTHER_CPU_NOTEBOOKS) $(OTHER_CPU_TESTS)
	@echo "== simulated CPU: no AVX2, no AVX-512 (SSE4.2)"
	env $(CPU_DEFAULT) $(BIN)/python $(NBVAL) $(OTHER_CPU_NOTEBOOKS) $(OTHER_CPU_TESTS)

test: lint unit nbval other-cpus site-check browser-or-skip

notebooks: setup
	$(BIN)/python -m nexttoken.execute $(NOTEBOOKS)

figures: setup
	$(BIN)/python -m nexttoken.figures figures

# Browser tests (tests/browser/): every widget run and driven in JupyterLab in Chromium, and every
# notebook's saved widgets shown without a kernel. `make test` runs them when Chromium is here.
browser: setup
	$(BIN)/python -m pytest tests/browser -q -p no:randomly $(BROWSER_ARGS)

browser-or-skip: setup
	@why="$$($(BIN)/python tests/browser/browserlab.py)"; \
	if [ -z "$$why" ]; then $(MAKE) --no-print-directory browser; \
	elif [ -n "$$CI" ]; then echo "browser tests: $$why, and CI must run them" >&2; exit 1; \
	else \
	  echo "******************************************************************************"; \
	  echo "*** SKIPPED the browser tests: $$why"; \
	  echo "******************************************************************************"; \
	fi

# figures/widgets/: each widget's first view and its view after one change, as the browser shows them
screenshots: setup
	$(BIN)/python -m pytest tests/browser/test_widgets.py -q -p no:randomly --update-screenshots

# bench: decode speed (benchmarks/decode.py). The serving comparison with transformers' continuous
# batching (issue 22) runs on its own: .venv/bin/python benchmarks/serving_peer.py [--quick]
# (about 8 minutes, --quick 3, on a quiet 2-core machine; writes benchmarks/results_serving_peer.json).
bench: setup
	$(BIN)/python benchmarks/decode.py

# The book as an offline website (website/build.py): the executed notebooks as they are, never re-run.
# NOTEBOOKS_DIR builds it from another copy; site-check crawls it in Chromium (tests/site/), and
# skips loudly where Chromium, Playwright or npm is missing (fails instead when CI is set).
NOTEBOOKS_DIR ?= notebooks
SITE_DIR      ?= site
CHROMIUM      ?= $(or $(firstword $(wildcard /usr/bin/chromium /usr/bin/chromium-browser /Applications/Chromium.app/Contents/MacOS/Chromium)),$(shell command -v chromium chromium-browser google-chrome 2>/dev/null | head -n 1),/usr/bin/chromium)
NODE_STAMP    := website/node_modules/.package-lock.json

$(NODE_STAMP): website/package.json website/package-lock.json
	npm ci --prefix website --ignore-scripts --no-audit --no-fund
	touch $(NODE_STAMP)

site: setup $(NODE_STAMP)
	$(BIN)/python website/build.py --notebooks $(NOTEBOOKS_DIR) --out $(SITE_DIR)

site-check: setup
	@why=""; \
	if [ ! -x "$(CHROMIUM)" ]; then why="no Chromium at $(CHROMIUM) (apt-get install chromium, or CHROMIUM=...)"; \
	elif ! $(BIN)/python -c "import playwright" 2>/dev/null; then why="Playwright for Python is not installed"; \
	elif ! command -v npm >/dev/null; then why="no npm (Node.js 20) to install the site's JavaScript"; fi; \
	if [ -z "$$why" ]; then \
	  $(MAKE) --no-print-directory site && \
	  SITE_DIR=$(SITE_DIR) CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest tests/site/check_site.py tests/site/check_live_model.py tests/site/test_live_ui.py -q -s; \
	elif [ -n "$$CI" ]; then \
	  echo "site check: $$why, and CI must run it" >&2; exit 1; \
	else \
	  echo "******************************************************************************"; \
	  echo "*** SKIPPED the website check (make site-check): $$why"; \
	  echo "******************************************************************************"; \
	fi

format: setup
	$(BIN)/ruff check --fix src tests benchmarks notebooks website
	$(BIN)/ruff format src tests benchmarks notebooks website

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis site .site-build website/node_modules
