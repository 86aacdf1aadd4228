# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo sentence-demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch would pull the CUDA build.
	$(BIN)/python -m pip install --quiet -c constraints.txt torch
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[pose,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/signlab demo --out runs/demo

sentence-demo: $(STAMP)
	$(BIN)/signlab sentence demo --out runs/sentence_demo

test: $(STAMP)
	# a worker a core (at most 4), each file on one worker so its trained fixtures are made once
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile --durations=15

runs/demo/hybrid/model.safetensors: $(STAMP)  # bench_serve.py serves the demo's bundle
	$(BIN)/signlab demo --out runs/demo

bench: $(STAMP) runs/demo/hybrid/model.safetensors
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
