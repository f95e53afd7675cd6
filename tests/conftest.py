"""Shared fixtures: a real engine server over HTTP on loopback, plan files, process checks."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from runners.evidence.oom_record import STATE_DIR_VAR
from runners.run.event_types import check_event
from runners.run.files import read_jsonl
from runners.testbed.mock_server import MockSettings, serve_mock
from runners.watchdog.link import GuardError

ROOT = Path(__file__).resolve().parent.parent
ENGINE_CONFIG = ROOT / "configs" / "engine-tiny.toml"
SHARED = ROOT.parent / "shared"
START_DEADLINE_S = 60.0
HOST = "127.0.0.1"
MOCK_START_S = 10.0
MOCK_STOP_S = 5.0


@pytest.fixture(autouse=True)
def own_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own host state (the known-OOM record): a guard KILL in one test must not refuse the
    plans of the next, nor touch the user's ~/.local/state. Subprocesses inherit it."""
    monkeypatch.setenv(STATE_DIR_VAR, str(tmp_path_factory.mktemp("state")))


@pytest.fixture(autouse=True)
def events_are_defined(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used tmp_path, every event it left in an events.jsonl has a defined type and fields.

    `runners.run.event_types` is the one definition of events; a runner, guard, console fake or bench that
    writes something else fails the test that ran it. Tests that write foreign lines on purpose say so with
    `@pytest.mark.foreign_events`.
    """
    if "tmp_path" not in request.fixturenames or request.node.get_closest_marker("foreign_events"):
        yield
        return
    root = request.getfixturevalue("tmp_path")  # asked for here, so it is torn down after this check
    yield
    problems = undefined_events(root)
    assert not problems, "events not defined in runners/run/event_types.py:\n" + "\n".join(problems[:20])


def undefined_events(root: Path) -> list[str]:
    """Every problem `check_event` finds in the events.jsonl files under `root`, with the file."""
    return [
        f"{path.relative_to(root)}: {problem}"
        for path in root.rglob("events.jsonl")
        for line in read_jsonl(path)
        for problem in check_event(line)
    ]


def free_port() -> int:
    """A free loopback port."""
    from runners.serve.process import free_port as pick

    return pick("127.0.0.1")


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
    """Start `python -m engine.server` on a free port; returns (process, base URL) once healthy."""
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
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
    except AssertionError:
        stop_process(proc)
        raise AssertionError(log.read_text()) from None
    return proc, url


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s; always reaps."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="session")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One engine server (CUTE_WO_SPLIT=8) shared by the HTTP tests."""
    log = tmp_path_factory.mktemp("engine") / "serve.log"
    proc, url = start_engine({"CUTE_WO_SPLIT": "8"}, log)
    yield url
    stop_process(proc)


def pid_gone(pid: int) -> bool:
    """True when `pid` no longer runs (a zombie waiting for a reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(predicate, deadline_s: float, interval_s: float = 0.1) -> bool:
    """Poll `predicate` until true or `deadline_s` passes; returns its last value."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


def write_plan(directory: Path, requests: int = 6, concurrency: int = 3, max_tokens: int = 12, **serve) -> Path:
    """A two-arm plan (CUTE_WO_SPLIT 1 and 8) against the embedded engine, written to `directory`."""
    serve_lines = "\n".join(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in serve.items())
    if "command" not in serve:
        serve_lines = f'engine_config = "{ENGINE_CONFIG}"\n' + serve_lines
    text = f"""
name = "mini"
description = "test plan"

[serve]
kind = "process"
ready_timeout_s = 60
{serve_lines}

[[arms]]
name = "split1"
env = {{ CUTE_WO_SPLIT = "1" }}

[[arms]]
name = "split8"
env = {{ CUTE_WO_SPLIT = 8 }}

[[phases]]
name = "replay"
kind = "sharegpt"
requests = {requests}
concurrency = {concurrency}
max_tokens = {max_tokens}
ignore_eos = true
http_timeout_s = 30
"""
    path = directory / "plan.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def docker_engine() -> Iterator:
    """A real Docker engine (started here with its data under /tmp when none runs); skips where none can."""
    from tests.docker_env import start_engine

    engine = start_engine()
    if isinstance(engine, str):
        pytest.skip(f"no Docker engine: {engine}")
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def busybox_image(docker_engine) -> str:
    """A busybox-static image imported into the engine (no registry pull)."""
    from tests.docker_env import build_image

    ref = build_image(docker_engine)
    if ref is None:
        pytest.skip("no static busybox at /bin/busybox (apt-get install -y busybox-static)")
    return ref


@pytest.fixture(scope="session")
def podman_engine() -> Iterator:
    """Podman's Docker-compatible API service (rootful), started here; skips where it cannot run."""
    from tests.docker_env import start_podman

    engine = start_podman()
    if isinstance(engine, str):
        pytest.skip(f"no Podman service: {engine}")
    yield engine
    engine.stop()


def fault_plan(tmp_path: Path, faults: list[str], phases: str, extra: str = "", ready_timeout_s: float = 60) -> Path:
    """A one-arm plan against the embedded engine started with `--test-fault` switches."""
    command = [
        "{python}", "-m", "engine.server", "--config", str(ENGINE_CONFIG), "--host", "{host}", "--port", "{port}",
        "--env-dir", "{env_dir}",
    ]  # fmt: skip
    for fault in faults:
        command += ["--test-fault", fault]
    path = tmp_path / "plan.toml"
    path.write_text(
        f"""
name = "incident"
{extra}
[serve]
command = {json.dumps(command)}
ready_timeout_s = {ready_timeout_s}
stop_timeout_s = 5

[[arms]]
name = "split4"
env = {{ CUTE_WO_SPLIT = "4" }}
{phases}
"""
    )
    return path


def run_headless(plan: Path, out: Path, timeout_s: float = 240) -> subprocess.CompletedProcess:
    """`gb10-console run PLAN --headless --out OUT` as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "console.cli", "run", str(plan), "--headless", "--out", str(out)],
        capture_output=True, text=True, timeout=timeout_s, cwd=ROOT,
    )  # fmt: skip


StartMock = Callable[[MockSettings], Awaitable[str]]


@pytest.fixture
async def start_mock() -> AsyncIterator[StartMock]:
    """Start mock servers as tasks of the test's loop on free loopback ports; all are cancelled at teardown."""
    tasks: list[asyncio.Task] = []

    async def start(settings: MockSettings) -> str:
        port = free_port()
        ready = asyncio.Event()
        server = asyncio.create_task(serve_mock(HOST, port, settings, ready))
        tasks.append(server)
        listening = asyncio.create_task(ready.wait())
        await asyncio.wait({server, listening}, timeout=MOCK_START_S, return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        if server.done():
            server.result()  # raises the server's own error (port taken, ...)
        assert ready.is_set(), f"mock server on {HOST}:{port} not listening within {MOCK_START_S} s"
        return f"http://{HOST}:{port}"

    yield start
    for task in tasks:
        task.cancel()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=MOCK_STOP_S)
        assert not pending, "a mock server did not stop when cancelled"


async def pilot_until(pilot, predicate, deadline_s: float = 30.0) -> bool:
    """Let a Textual app run (pilot.pause) until `predicate()` or `deadline_s` passes; returns its last value."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return True
        await pilot.pause(0.1)
    return bool(predicate())


class NoGuard:
    """A memory guard that cannot start (monkeypatch it over `runners.soak.execute.GuardLink`): the session
    ends right after its start-of-session events, before any target starts."""

    def __init__(self, *args: object) -> None:
        pass

    def start(self) -> None:
        raise GuardError("no guard in this test")

    async def stop(self) -> None:
        pass
