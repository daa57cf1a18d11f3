# The README's two commands: `make demo` (set up, run an LLM call) and `make test` (set up, run the tests).
# Everything installs into ./.venv; nothing outside the project folder is touched except the
# per-user model cache of `python -m openai_utils local setup`.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED_TIKTOKEN := $(abspath ../shared/tiktoken)
ifneq ($(wildcard $(SHARED_TIKTOKEN)),)
export TIKTOKEN_CACHE_DIR ?= $(SHARED_TIKTOKEN)
endif

.PHONY: demo test bench setup

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/run.py
