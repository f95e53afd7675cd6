"""`provenance.json`: where, on what, and with which code a run ran; one entry per runner session."""

from __future__ import annotations

import concurrent.futures
import hashlib
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from runners.run.files import read_json, write_json_atomic
from runners.run.paths import PROJECT_ROOT
from runners.run.redact import redact_argv
from runners.run.rundir import RunDir

PACKAGES = ("gb10-console", "torch", "textual", "httpx", "pydantic", "starlette", "uvicorn", "nvidia-ml-py")
NVML_DEADLINE_S = 5.0
GIT_DEADLINE_S = 5.0


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _gpu() -> dict:
    """GPU names and driver from NVML, run in a thread under a deadline; `available: false` with a reason."""

    def query() -> dict:
        import pynvml

        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
            return {"available": True, "driver": pynvml.nvmlSystemGetDriverVersion(), "devices": names}
        finally:
            pynvml.nvmlShutdown()

    # A daemon thread, not an executor: executor threads are joined at exit, so a hung driver call
    # would hang the runner's exit too.
    result: concurrent.futures.Future[dict] = concurrent.futures.Future()

    def work() -> None:
        try:
            result.set_result(query())
        except Exception as exc:  # pynvml raises NVMLError subclasses, or ImportError
            result.set_exception(exc)

    threading.Thread(target=work, name="nvml-provenance", daemon=True).start()
    try:
        return result.result(timeout=NVML_DEADLINE_S)
    except concurrent.futures.TimeoutError:
        return {"available": False, "reason": f"NVML did not answer within {NVML_DEADLINE_S:g} s"}
    except Exception as exc:
        return {"available": False, "reason": f"NVML: {type(exc).__name__}: {exc}"}


def git_state(path: Path) -> dict:
    """HEAD sha and whether the work tree is dirty, for the repository holding `path` (if any)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(path), *args], capture_output=True, text=True, timeout=GIT_DEADLINE_S, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    sha = git("rev-parse", "HEAD")
    if sha is None:
        return {"sha": None}
    return {"sha": sha, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def start_session(run: RunDir, argv: list[str]) -> None:
    """Record the host facts (first session) and open a new session entry."""
    try:
        prov = read_json(run.provenance)
    except FileNotFoundError:
        info = run.info()
        uname = platform.uname()
        prov = {
            "schema": 1,
            "run_id": info["run_id"],
            "host": {
                "hostname": socket.gethostname(),
                "kernel": uname.release,
                "os": f"{uname.system} {uname.version}",
                "machine": uname.machine,
                "cpus": os.cpu_count(),
            },
            "gpu": _gpu(),
            "versions": _versions(),
            "project": {"path": str(PROJECT_ROOT), **git_state(PROJECT_ROOT)},
            "plan": {
                "source": info.get("plan_source"),
                "sha256": _sha256(run.plan_toml),
                "repo": git_state(Path(info.get("plan_dir", "."))),
            },
            "sessions": [],
        }
    prov["sessions"].append(
        {
            "pid": os.getpid(),
            "argv": redact_argv(argv),
            "python": sys.executable,
            "started_at": time.time(),
            "ended_at": None,
        }
    )
    write_json_atomic(run.provenance, prov)


def record_target(run: RunDir, session: str, target: dict) -> None:
    """Record what a serve session ran (image id and digests, command or URL) under `targets`."""
    prov = read_json(run.provenance)
    prov.setdefault("targets", {})[session] = target
    write_json_atomic(run.provenance, prov)


def record_datasets(run: RunDir, datasets: list[dict]) -> None:
    """Record, per phase field, the data file this session reads (source, revision, commit, sha256) under `datasets`;
    a later session that reads different bytes is kept beside the first as `datasets_changed`."""
    prov = read_json(run.provenance)
    before = prov.get("datasets")
    if before is not None and before != datasets:
        prov.setdefault("datasets_changed", []).append({"session": len(prov["sessions"]), "datasets": datasets})
    else:
        prov["datasets"] = datasets
    write_json_atomic(run.provenance, prov)


def end_session(run: RunDir, status: str, exit_code: int) -> None:
    """Close the current session entry with its status and exit code."""
    prov = read_json(run.provenance)
    prov["sessions"][-1].update({"ended_at": time.time(), "status": status, "exit_code": exit_code})
    write_json_atomic(run.provenance, prov)
