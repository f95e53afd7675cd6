"""DockerRuntime's stop/kill escalation and watcher against a scripted fake engine.

The real-daemon tests (test_docker_runtime.py) cover the happy paths and a hung socket; these
cover what a real daemon will not do on demand: a stop call that fails, a kill that fails while
the container is already gone, and garbage where an inspect body belongs. Podman's CDI GPU request is
part of the container config (test_container_config.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from runners.host.docker_api import DockerClient
from runners.host.owner import Owner
from runners.plan.serve_spec import DockerServe
from runners.serve.docker import DockerDeadlines, DockerRuntime
from runners.serve.runtime import ServeError

CONTAINER = "0123456789abcdef0123"
SOCKET = Path("/nonexistent/gb10-fake-docker.sock")  # the CLI fallback fails at once against it
FAST = DockerDeadlines(call_s=0.5, kill_s=0.5, cli_kill_s=3.0, confirm_exit_s=0.5, watch_interval_s=0.02)

Handler = Callable[[httpx.Request], httpx.Response]


def state(running: bool, code: int = 0, oom: bool = False) -> dict:
    """An inspect body with just the State."""
    status = "running" if running else "exited"
    return {"State": {"Status": status, "Running": running, "ExitCode": code, "OOMKilled": oom}}


def attached(tmp_path: Path, handler: Handler, **fields) -> DockerRuntime:
    """A runtime as if start() had created CONTAINER, talking to `handler` instead of a socket."""
    spec = DockerServe.model_validate(
        {"kind": "docker", "image": "vllm:local", "command": ["s", "{host}", "{port}"], "gpus": "none", **fields}
    )
    rt = DockerRuntime(
        spec, {}, run_id="r", arm="a", mode="primary", serve_dir=tmp_path, env_dir=tmp_path / "env", resolve=Path,
        owner=Owner("h", 1, 2),
        deadlines=FAST,
    )  # fmt: skip
    rt._client = DockerClient(SOCKET, FAST.call_s, transport=httpx.MockTransport(handler))
    rt._client.api_version = "1.41"
    rt._client.server = {"Components": [{"Name": "Engine"}]}
    rt.id = CONTAINER
    return rt


async def test_a_failing_stop_call_escalates_to_kill(tmp_path: Path) -> None:
    """stop answers 500: the runtime kills, confirms the exit and reports `killed`."""
    calls: list[str] = []
    killed = False

    def engine(request: httpx.Request) -> httpx.Response:
        nonlocal killed
        calls.append(f"{request.method} {request.url.path.split('/', 2)[-1]}")
        if request.url.path.endswith("/stop"):
            return httpx.Response(500, json={"message": "stop failed"})
        if request.url.path.endswith("/kill"):
            killed = True
            return httpx.Response(204)
        return httpx.Response(200, json=state(running=not killed, code=137))

    rt = attached(tmp_path, engine)
    ended = await rt.stop(grace_s=1)
    assert (ended.how, ended.returncode) == ("killed", 137)
    assert calls[:2] == [f"POST containers/{CONTAINER}/stop", f"POST containers/{CONTAINER}/kill"]
    assert "stop failed" in (rt.last_error or "")
    assert (tmp_path / "container.json").is_file()
    assert (await rt.stop(1)).how == "killed"  # a second stop is answered from the record


async def test_a_kill_that_fails_everywhere_but_finds_the_container_gone_is_not_an_error(tmp_path: Path) -> None:
    """API kill times out, the CLI cannot connect, but inspect says it exited: that is success, not a report."""
    kill_attempted = asyncio.Event()

    async def engine(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/kill"):
            kill_attempted.set()
            await asyncio.sleep(5)  # past the kill deadline
        return httpx.Response(200, json=state(running=False, code=137))

    rt = attached(tmp_path, engine)
    t0 = time.monotonic()
    ended = await rt.kill()
    assert kill_attempted.is_set() and ended.returncode == 137 and ended.how == "killed"
    assert time.monotonic() - t0 < 6


async def test_a_container_that_still_runs_after_every_kill_is_a_clear_report(tmp_path: Path) -> None:
    """Nothing kills it: ServeError saying it may still run and how to kill it by hand."""

    def engine(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/kill"):
            return httpx.Response(500, json={"message": "cannot kill container: permission denied"})
        return httpx.Response(200, json=state(running=True))

    rt = attached(tmp_path, engine)
    with pytest.raises(ServeError) as failure:
        await rt.kill()
    message = str(failure.value)
    assert "may still be running" in message and f"docker kill {CONTAINER[:12]}" in message
    assert "permission denied" in message and "CLI:" in message


async def test_the_watcher_survives_garbage_and_sees_the_exit(tmp_path: Path) -> None:
    """Non-JSON inspect bodies are recorded, not fatal; the exit is still seen and classified."""
    answers = iter([b"<html>", b"not json", None, None])

    def engine(request: httpx.Request) -> httpx.Response:
        body = next(answers, None)
        if isinstance(body, bytes):
            return httpx.Response(200, content=body)
        return httpx.Response(200, json=state(running=False, code=137, oom=True))

    rt = attached(tmp_path, engine)
    rt._watcher = asyncio.create_task(rt._watch())
    ended = await asyncio.wait_for(rt.wait_exit(), 5)
    assert ended.how == "OOM-killed" and "OOMKilled=true" in ended.detail
    assert "not a JSON dict" in (rt.last_error or "")
    await rt.stop(1)


async def test_a_container_removed_from_outside_ends_the_watch(tmp_path: Path) -> None:
    """404 on inspect: `removed from outside the runner`, and stop does not hang on it."""

    def engine(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"message": f"No such container: {CONTAINER}"})

    rt = attached(tmp_path, engine)
    rt._watcher = asyncio.create_task(rt._watch())
    ended = await asyncio.wait_for(rt.wait_exit(), 5)
    assert ended.how == "removed from outside the runner"
    assert (await asyncio.wait_for(rt.stop(1), 5)).how == "removed from outside the runner"


async def test_after_an_unconfirmed_kill_every_later_stop_still_says_it_may_run(tmp_path: Path) -> None:
    """A failed kill closes the runtime; stop() afterwards raises again instead of reporting an end."""

    def engine(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/kill"):
            return httpx.Response(500, json={"message": "no"})
        return httpx.Response(200, json=state(running=True))

    rt = attached(tmp_path, engine)
    with pytest.raises(ServeError):
        await rt.kill()
    with pytest.raises(ServeError, match="may still be running"):
        await rt.stop(1)
