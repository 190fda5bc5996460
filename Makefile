# The two quick-start commands (README): `make search` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch: a CPU/CUDA build of 2.13.0 by default; override e.g. `make test TORCH=torch==2.14.1`.
TORCH  ?= torch==2.13.0
# MovieLens-100K: $NASP_DATA_DIR if set, else a sibling ../shared/data copy, else ./datasets (downloaded).
NASP_DATA_DIR ?= $(shell test -f ../shared/data/ml-100k/u.data && echo ../shared/data)
export NASP_DATA_DIR

.PHONY: setup search test bench clean

$(BIN)/.installed: setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[test]"
	touch $@

setup: $(BIN)/.installed

search: setup  ## SIF search + retrain on MovieLens-100K with the defaults
	$(BIN)/nasp sif search --data ml-100k $(ARGS)

test: setup  ## the whole test suite (CPU, a few minutes)
	$(BIN)/python -m pytest -q tests $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
