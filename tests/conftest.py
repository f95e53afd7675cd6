"""The suite's fixtures: each session's own host scope and its leak check, each test's own host state, the event
check after every test, a real engine server over HTTP on loopback, container engines, and mock servers. What
they are built on is in tests/support."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from runners.evidence.oom_record import STATE_DIR_VAR
from runners.host.scope import HOST_SCOPE_VAR
from runners.run.runtime_dir import RUNTIME_DIR_VAR
from runners.testbed.mock_server import MockSettings
from tests.support.events import undefined_events
from tests.support.hub_server import NO_SHARED, LoopbackHf, loopback_hf_session
from tests.support.leaks import reap_leaks
from tests.support.mock import StartMock, start_mock_server, stop_mock_servers
from tests.support.processes import start_engine, stop_process

# What this pytest process (a worker, or xdist's controller) keeps under one private temp directory, removed by
# `pytest_unconfigure` whether or not it ran a test:
# - an empty, offline HF cache: no test reaches the real Hugging Face Hub or reads the user's cache (tests of the
#   datasets serve the Hub on loopback, `loopback_hf`, and say so in the environment of what they start);
# - the runs' private runtime directories (their ENV sentinels): a test that kills a runner leaves its directory
#   here, never in /tmp.
TEST_PRIVATE = Path(tempfile.mkdtemp(prefix="gb10-test-"))
os.environ.update(HF_HOME=str(TEST_PRIVATE / "hf"), HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
for _name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT", "TRANSFORMERS_OFFLINE"):
    os.environ.pop(_name, None)
os.environ[RUNTIME_DIR_VAR] = str(TEST_PRIVATE / "rt")


def pytest_unconfigure() -> None:
    """Remove this process's private temp directory (TEST_PRIVATE)."""
    shutil.rmtree(TEST_PRIVATE, ignore_errors=True)


# Tests that use one of these fixtures run in one pytest-xdist group each (`--dist loadgroup`: one worker, one
# after another): a container test's orphan sweep or pre-flight would see another's containers, and tests/vllm
# start one vLLM per worker that runs them.
XDIST_GROUP_OF_FIXTURE = {
    "docker_engine": "container-engine",
    "podman_engine": "container-engine",
    "busybox_image": "container-engine",
    "vllm_external": "vllm",
}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own, which reads the groups into the test ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put each test that uses a fixture of XDIST_GROUP_OF_FIXTURE in that fixture's xdist group."""
    for item in items:
        groups = {XDIST_GROUP_OF_FIXTURE[name] for name in getattr(item, "fixturenames", ()) if name in
                  XDIST_GROUP_OF_FIXTURE}  # fmt: skip
        assert len(groups) <= 1, f"{item.nodeid} uses fixtures of several xdist groups: {sorted(groups)}"
        if groups and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(groups.pop()))


@pytest.fixture(scope="session", autouse=True)
def session_host_scope() -> Iterator[str]:
    """This session's own host scope (`runners/host/scope.py`; one per xdist worker), inherited by every process
    its tests start, so that concurrent workers' runs never refuse each other's serve targets. Set up before and
    torn down after every other session fixture: then a process still carrying the scope outlived the tests
    that started it, and the session fails, naming each one and its test (it is killed)."""
    scope = f"pytest-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{os.getpid()}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(HOST_SCOPE_VAR, scope)
        yield scope
    leaked = reap_leaks(scope)
    assert not leaked, "processes the tests started outlived them (now killed):\n" + "\n".join(map(str, leaked))


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
    root: Path = request.getfixturevalue("tmp_path")  # asked for here, so it is torn down after this check
    yield
    problems = undefined_events(root)
    assert not problems, "events not defined in runners/run/event_types.py:\n" + "\n".join(problems[:20])


@pytest.fixture
def started_processes() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts (it appends them); every one still running is killed and reaped afterwards."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="session")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One engine server (CUTE_WO_SPLIT=8) shared by the HTTP tests."""
    log = tmp_path_factory.mktemp("engine") / "serve.log"
    proc, url = start_engine({"CUTE_WO_SPLIT": "8"}, log)
    yield url
    stop_process(proc)


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


@pytest.fixture
async def start_mock() -> AsyncIterator[StartMock]:
    """Start mock servers as tasks of the test's loop on free loopback ports; all are cancelled at teardown."""
    tasks: list[asyncio.Task] = []

    async def start(settings: MockSettings) -> str:
        return await start_mock_server(settings, tasks)

    yield start
    await stop_mock_servers(tasks)


@pytest.fixture(scope="session")
def loopback_hf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackHf]:
    """../shared's GSM8K and ShareGPT served as the Hub serves them, and an HF cache they were pulled into with
    `gb10-console data pull` (skips where ../shared is absent)."""
    with loopback_hf_session(tmp_path_factory.mktemp("hf")) as hub:
        if hub is None:
            pytest.skip(NO_SHARED)
        yield hub


@pytest.fixture
def hf_cached(loopback_hf: LoopbackHf, monkeypatch: pytest.MonkeyPatch) -> LoopbackHf:
    """This test's Hub client (and what it starts) reads `loopback_hf`'s filled cache, offline."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(loopback_hf.home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(loopback_hf.home / "hub"))
    return loopback_hf
