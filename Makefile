# The two commands of the README: `make demo` (main job on the demo data) and `make test`.
# Both create the virtual environment on first use.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
export EMOHEAD_MIRROR ?= $(abspath ../shared)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: venv demo demo-mead test test-all lint bench clean-demo

venv: $(VENV)/.installed

# torch==2.13.0 resolves to the local CPU wheel; every pin is in requirements.txt (no
# unpinned package can drag in a CUDA torch). Never add torchaudio / torchvision here.
$(VENV)/.installed: requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# SNAKEMAKE_ARGS: extra arguments, e.g. "all_preprocess" (only the preprocessing; any stage
# target all_<stage>) or "-n" (dry run).
demo: venv
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS) --printshellcmds --configfile config/demo.yaml

# The MEAD demo: strongly acted clips of three MEAD actors, per-actor hyperplanes over eight
# emotions, a renderer of M030 with calibrated emotion control (results/demo_mead/).
demo-mead: venv
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS) --printshellcmds --configfile config/demo_mead.yaml

# pytest's exit 5 ("no tests collected", e.g. a -m filter deselecting everything) is a failure
# with a message, never a silent pass.
test: venv
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (check tests/ and -m in pyproject.toml)" >&2; fi; \
	exit $$rc

test-all: venv
	$(BIN)/python -m pytest -m "" 

lint: venv
	$(BIN)/snakemake --lint --configfile config/demo.yaml
	$(BIN)/snakefmt --check .
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: venv
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean-demo:
	rm -rf results resources logs benchmarks .snakemake
