# nbkit: `make lab` to explore, `make test` to check everything.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
# Exact pins for the install step; pyproject.toml keeps ranges.
TORCH   := torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=
NB_EXEC := --ExecutePreprocessor.store_widget_state=False --ExecutePreprocessor.timeout=1200

.PHONY: lab test test-quick bench figures notebooks lint clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.lab-installed: pyproject.toml | $(PY)
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(PY)
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e ".[test,browser,figures,cluster]"
	touch $@ $(VENV)/.lab-installed

## make lab: install what the notebooks need and open JupyterLab on notebooks/ (token on)
lab: $(VENV)/.lab-installed
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

## make test: ruff, then the unit, property, notebook (nbval) and browser tests
test: $(VENV)/.test-installed
	$(VENV)/bin/ruff check .
	$(PY) -m pytest tests notebooks --nbval-lax -p no:cacheprovider $(PYTEST_ARGS)

## make test-quick: the same without the browser tests, for quick local loops
test-quick: $(VENV)/.test-installed
	$(VENV)/bin/ruff check .
	$(PY) -m pytest tests notebooks --nbval-lax -m "not browser" $(PYTEST_ARGS)

## make bench: speed benchmarks (CPU-friendly --quick unless BENCH_ARGS is set)
BENCH_ARGS ?= --quick
bench: $(VENV)/.test-installed
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b $(BENCH_ARGS) || exit 1; done

## make figures: execute every notebook headless and write an HTML gallery to build/
figures: $(VENV)/.test-installed
	$(PY) -m nbkit.gallery --out build/gallery --figures docs/figures

## make notebooks: re-execute notebooks/ in quick mode, in place, with PNG snapshots
notebooks: $(VENV)/.test-installed
	$(PY) -m nbkit.gallery --refresh

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check .

clean:
	rm -rf build .pytest_cache .ruff_cache
