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
	# [cpu]: the CPU onnxruntime (the runtime is an extra; README, Installing).
	$(PIP) install -q -e '.[cpu,train,dev]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	mkdir -p out
	$(VENV)/bin/hsanomaly detect examples/abu-airport-2.tif out/airport-2.tif --png out/airport-2.png
	$(VENV)/bin/hsanomaly evaluate out/airport-2.tif examples/abu-airport-2-truth.tif --plots out/plots

# two test processes: the suite's tests are single-threaded, and CI has two cores
test: venv
	$(VENV)/bin/python -m pytest -q -n 2
	scripts/qgis-tests.sh

# Build the sdist and wheel, install the wheel in a clean venv, run it, and check that the
# QGIS plugin zip carries the package's version (CI runs this after `make test`).
wheel-check:
	scripts/wheel-check.sh

# Regenerate docs/benchmark.md and docs/report.md (the thesis reproduction) from the shared
# scenes. Both keep their GAN models in $(MODELS), so `thesis` reuses the benchmark's seed-0 models.
DATA ?= ../shared/data
MODELS ?= .models
JOBS ?= 2

GAN_CANDIDATES = context,resrx,mcontext,rescontext,dualcontext:top_rings=0:purge=0:neighbour_weight=0,dualcontext:top_rings=0:purge=0.03:neighbour_weight=0,dualcontext:top_rings=0:purge=0.05:neighbour_weight=0,dualcontext:top_rings=0:purge=0.08:neighbour_weight=0,dualcontext:top_rings=2:purge=0.03:neighbour_weight=0,dualcontext:top_rings=3:purge=0.03:neighbour_weight=0,dualcontext:top_rings=4:purge=0.03:neighbour_weight=0,dualcontext:top_rings=4:purge=0.03:codebook_scale=2:neighbour_weight=0,dualcontext:top_rings=4:purge=0.03:neighbour_weight=0.25,dualcontext:top_rings=4:purge=0.03:neighbour_weight=0.5,dualcontext:top_rings=4:purge=0.03:neighbour_weight=1
# dualcontext's weight is held at 0.5, not selected (docs/ablations.md); these show what 0 and 1 give.
WEIGHTS = dualcontext:top_rings=0:weight=0:purge=0.03:neighbour_weight=0,dualcontext:top_rings=0:weight=1:purge=0.03:neighbour_weight=0
WITHOUT_GAN = rx,lrx,lrx:outer=21:guard=7,gmm,mlrx,rxmlrx,mlrx:purge=0.03,mlrx:purge=0.05,mlrx:purge=0.08,mlrx:top_rings=2:purge=0.08,mlrx:top_rings=3:purge=0.08,rxmlrx:purge=0.03,rxmlrx:purge=0.05,mlrx:purge=0.08:neighbour_weight=0.25,mlrx:purge=0.08:neighbour_weight=0.5,mlrx:purge=0.03:neighbour_weight=0.5,rxmlrx:purge=0.03:neighbour_weight=0.5

benchmark: venv
	mkdir -p out
	$(VENV)/bin/hsanomaly benchmark $(DATA) \
		--scores $(WITHOUT_GAN),critic,recon,recon:codebook_scale=2,recon:refine=2,recon:c2=0.1,anogan,$(GAN_CANDIDATES),$(WEIGHTS) \
		--select $(GAN_CANDIDATES) --ablation $(WITHOUT_GAN) \
		--seeds 0,1,2 --jobs $(JOBS) --models $(MODELS) --out out/benchmark \
		--markdown docs/benchmark.md --reference benchmarks/reference-shared-data.csv

thesis: venv
	$(VENV)/bin/hsanomaly thesis $(DATA) --out docs --models $(MODELS) --jobs $(JOBS)

.PHONY: venv demo test wheel-check benchmark thesis
