"""Processes the tests start and check: free ports, the embedded engine server, a headless run, whether a
process is gone. Every start has a deadline and every process an owner that stops and reaps it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from runners.host.owner import RUN_ID_VAR
from runners.serve.process import free_port as pick_free_port
from tests.support.project import ENGINE_CONFIG, ROOT

HOST = "127.0.0.1"
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 10.0


def free_port() -> int:
    """A free loopback port."""
    return pick_free_port(HOST)


def wait_healthy(url: str, proc: subprocess.Popen, deadline_s: float = START_DEADLINE_S) -> None:
    """Poll /health until 200; fail with the server's output if it exits or the deadline passes."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"engine server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"engine server at {url} not healthy within {deadline_s} s")


def start_engine(env: dict[str, str], log: Path, extra_args: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """Start `python -m engine.server` on a free port; returns (process, base URL) once healthy. The caller
    stops it (stop_process)."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if k not in ("CUTE_WO_SPLIT", "GB10_ENV_DIR")}
    full_env.update(env)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.server", "--config", str(ENGINE_CONFIG), "--port", str(port), *extra_args],
            env=full_env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    url = f"http://{HOST}:{port}"
    try:
        wait_healthy(url, proc)
    except AssertionError:
        stop_process(proc)
        raise AssertionError(log.read_text()) from None
    return proc, url


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after STOP_DEADLINE_S; always reaps."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_DEADLINE_S)


def pid_gone(pid: int) -> bool:
    """True when `pid` no longer runs (a zombie waiting for a reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def run_headless(plan: Path, out: Path, timeout_s: float = 240) -> subprocess.CompletedProcess:
    """`gb10-console run PLAN --headless --out OUT` as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "console.cli", "run", str(plan), "--headless", "--out", str(out)],
        capture_output=True, text=True, timeout=timeout_s, cwd=ROOT,
    )  # fmt: skip


def labelled_sleeper(run_id: str | None, owner: list[subprocess.Popen]) -> subprocess.Popen:
    """`sleep 300` in a session of its own, labelled with `run_id` (GB10_RUN_ID, as a serve target of that run is;
    None: unlabelled), appended to `owner`, which kills and reaps it (the started_processes fixture)."""
    env = {**os.environ, **({RUN_ID_VAR: run_id} if run_id else {})}
    proc = subprocess.Popen(["sleep", "300"], env=env, start_new_session=True)
    owner.append(proc)
    return proc
