# The two quick-start commands (README): `make search` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch: a CPU/CUDA build of 2.13.0 by default; override e.g. `make test TORCH=torch==2.14.1`.
TORCH  ?= torch==2.13.0
# Data: the commands resolve known names under --data-dir, else $NASP_DATA_DIR, else this clone's
# datasets/ (from any working directory), else ~/.cache/nasp/datasets.
# `make setup` links every data set of a sibling ../shared/data into ./datasets (symlinks, never
# copies, never over an existing entry), so that `nasp ... --data ml-100k` finds the same files
# in and outside make. SHARED_DATA=DIR links from another folder.
SHARED_DATA ?= ../shared/data

.PHONY: setup data-links search test test-all bench clean

$(BIN)/.installed: setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[test]"
	touch $@

setup: $(BIN)/.installed data-links

data-links:  ## link $(SHARED_DATA)/<name> into ./datasets/<name> where there is no such entry yet
	@test ! -d "$(SHARED_DATA)" || for d in "$(SHARED_DATA)"/*/; do \
	  [ -d "$$d" ] || continue; name=$$(basename "$$d"); \
	  if [ ! -e "datasets/$$name" ] && [ ! -L "datasets/$$name" ]; then \
	    ln -s "$$(cd "$$d" && pwd)" "datasets/$$name" && echo "datasets/$$name -> $$(cd "$$d" && pwd)"; \
	  fi; \
	done

search: setup  ## SIF search + retrain on MovieLens-100K with the defaults
	$(BIN)/nasp sif search --data ml-100k $(ARGS)

test: setup  ## the test suite (CPU, under 10 minutes; leaves out the cases marked slow)
	$(BIN)/python -m pytest -q -m "not slow" tests $(ARGS)

test-all: setup  ## every test, the slow cases included
	$(BIN)/python -m pytest -q tests $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
