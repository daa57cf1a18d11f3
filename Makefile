# The README's two commands: `make demo` (set up, run an LLM call) and `make test` (set up, run the tests).
# Everything installs into ./.venv; the only thing written outside this folder is the converted
# embedding model, in the per-user cache (~/.cache/openai_utils/models, or OPENAI_UTILS_CACHE_DIR).

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
	$(PY) -m pip install --quiet -e '.[test,local,structured,progress]'
	$(PY) -m openai_utils local setup --quiet
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m openai_utils local demo

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/run.py
