# Two entry points for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch 2.13.0 CPU build: pinned so pip never pulls a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[train,dev]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	mkdir -p out
	$(VENV)/bin/hsanomaly detect examples/abu-airport-2.tif out/airport-2.tif --png out/airport-2.png
	$(VENV)/bin/hsanomaly evaluate out/airport-2.tif examples/abu-airport-2-truth.tif --plots out/plots

test: venv
	$(VENV)/bin/python -m pytest -q
	scripts/qgis-tests.sh

.PHONY: venv demo test
