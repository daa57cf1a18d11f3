# The README's two commands: `make demo` (set up, run an LLM call) and `make test` (set up, run the tests).
# For development: `make check` (lint, format check and mypy, through scripts/check) and `make bench`.
# Everything installs into ./.venv; the only thing written outside this folder is the converted
# embedding model, in the per-user cache (~/.cache/openai_utils/models, or OPENAI_UTILS_CACHE_DIR).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED_TIKTOKEN := $(abspath ../shared/tiktoken)
ifneq ($(wildcard $(SHARED_TIKTOKEN)),)
export TIKTOKEN_CACHE_DIR ?= $(SHARED_TIKTOKEN)
endif

.PHONY: demo test check bench bench-peers setup

# setuptools announces, as a warning, how it makes every editable install of a project whose
# package sits at the top level rather than under src/ ("Editable installation ... be careful
# with folders in your working directory with the same name as your package"). That is this
# project by design, the note asks nothing of anyone, and pip shows it as a warning banner on
# every setup: filter exactly that message, so a real build warning still shows.
QUIET_EDITABLE_NOTE := PYTHONWARNINGS='ignore:Editable installation'

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(QUIET_EDITABLE_NOTE) $(PY) -m pip install --quiet -e '.[test,local,structured,progress]'
	$(PY) -m openai_utils local setup --quiet
	touch $@

setup: $(VENV)/.installed

# The checking tools (setup.cfg's `dev` extra) go into the same venv, so mypy sees every package
# the code and the tests import; `make test` and `make demo` do without them.
$(VENV)/.dev-installed: $(VENV)/.installed
	$(QUIET_EDITABLE_NOTE) $(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: setup
	$(PY) -m openai_utils local demo

test: setup
	$(PY) -m pytest

check: $(VENV)/.dev-installed
	VENV=$(VENV) scripts/check

bench: setup
	$(PY) benchmarks/run.py

# The peers users would pick instead (see benchmarks/bench_peers.py), in a virtualenv of their own
# so ./.venv stays as users get it. litellm 1.107.0 was a compromised release (withdrawn): the
# lower bound keeps it out. A hit in litellm's in-memory cache imports parts of its proxy, which
# need fastapi, orjson and soundfile that plain litellm does not install.
PEERS_VENV ?= .venv-peers
PEERS_PY := $(PEERS_VENV)/bin/python
PEERS := 'litellm>=1.108,<2' 'fastapi>=0.110,<1' 'orjson>=3.9,<4' 'soundfile>=0.12,<1'

$(PEERS_VENV)/.installed: setup.cfg pyproject.toml Makefile
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_PY) -m pip install --quiet --upgrade pip
	$(QUIET_EDITABLE_NOTE) $(PEERS_PY) -m pip install --quiet -e '.[test,local,structured,progress]' $(PEERS)
	$(PEERS_PY) -m openai_utils local setup --quiet
	touch $@

# Nothing but 127.0.0.1 is called: litellm uses the copies it bundles (model prices, tokenizers,
# header lists) instead of fetching them, and bench_peers.py sets the same again in-process and
# refuses any connection off loopback while the peers run.
LITELLM_OFFLINE := LITELLM_OFFLINE_MODE=true LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS=True

bench-peers: $(PEERS_VENV)/.installed
	$(LITELLM_OFFLINE) $(PEERS_PY) benchmarks/run.py
