# Two set-up commands on a fresh machine: `make demo` and `make test`. Each builds .venv first.
SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
# The CPU build of torch; an unpinned torch pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
# This machine's pip.conf names local index folders that lack most projects; pip warns once per project.
PIP_NOISE := is ignored: it is neither a file nor a directory

.PHONY: demo test lint venv clean

demo: $(VENV)/.installed
	$(BIN)/gb10-console demo

test: $(VENV)/.installed lint
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/lint-imports

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install "$(TORCH)" 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	$(PIP) install -e ".[dev]" 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	$(BIN)/python -c "import torch, textual, httpx, pydantic, uvicorn, starlette, pynvml, prometheus_client, orjson, uvloop, sniffio"
	touch $@

clean:
	rm -rf $(VENV) runs .pytest_cache
