# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.noisecraft-installed
EXTRAS ?= dev,text,tabular
# The CPU build of torch lies on this machine's disk; pinning it keeps pip from fetching a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: env demo test bench bench-samplers bench-digits bench-overhead clean

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)" || $(BIN)/python -m pip install -q torch
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/noisecraft demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: bench-samplers bench-overhead bench-digits

bench-samplers: $(STAMP)
	$(BIN)/python benchmarks/sampler_accuracy.py

bench-overhead: $(STAMP)
	$(BIN)/python benchmarks/sampling_overhead.py

bench-digits: $(STAMP)
	$(BIN)/python benchmarks/time_to_quality.py

clean:
	rm -rf $(VENV) build dist *.egg-info
