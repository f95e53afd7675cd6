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

.PHONY: demo test lint venv clean system-deps

demo: $(VENV)/.installed
	$(BIN)/gb10-console demo

test: $(VENV)/.installed lint system-deps
	$(BIN)/python -m pytest -q

# The container tests need dockerd, podman and a static busybox (the tests start dockerd and
# Podman's API service themselves, with data under /tmp, and import a busybox image: no registry
# pulls); the web-console test needs a headless Chromium. As root on Debian they are installed here;
# elsewhere those tests skip and say why.
system-deps:
	@missing=""; \
	command -v dockerd >/dev/null || missing=" docker.io"; \
	command -v podman >/dev/null || missing="$$missing podman"; \
	if command -v dpkg >/dev/null && ! dpkg -s busybox-static >/dev/null 2>&1; then missing="$$missing busybox-static"; fi; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing for the container and web tests (log: /tmp/gb10-apt.log)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; } >/tmp/gb10-apt.log 2>&1 \
	      || echo "note: installing$$missing failed (see /tmp/gb10-apt.log); the tests that need them will skip"; \
	  else echo "note:$$missing not installed and not root: the tests that need them will skip"; fi; \
	fi

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install "$(TORCH)" 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	$(PIP) install -e ".[dev]" 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	$(BIN)/python -c "import torch, textual, httpx, pydantic, uvicorn, starlette, pynvml, prometheus_client, orjson, uvloop, sniffio, matplotlib"
	touch $@

clean:
	rm -rf $(VENV) runs .pytest_cache
