"""Docker serve target without a daemon: the Engine API client against httpx.MockTransport, the log
frame decoder, exit classification, the container config, owner labels, memory cgroups in fake
/proc and /sys trees, and the [serve] table of plans (docker and external kinds).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from engine.config_file import ConfigFileError, load_toml_model
from runners.host import docker_api
from runners.host.cgroup import MemoryCgroup, memory_cgroup
from runners.host.docker_api import (
    MAX_API_VERSION,
    DockerClient,
    DockerError,
    LogFrames,
    explain,
    find_socket,
    podman_sockets,
)
from runners.host.owner import Owner, process_start_ticks, run_labels
from runners.plan.fields import parse_size
from runners.plan.load import load_plan
from runners.plan.model import Plan
from runners.plan.serve_spec import DockerServe, ExternalServe, ProcessServe
from runners.serve.docker import DockerRuntime, classify_exit, container_state
from runners.serve.runtime import ExitInfo
from tests.conftest import ROOT, write_plan

SOCKET = Path("/run/test-engine/docker.sock")  # only ever named in messages; MockTransport does the talking
GIB = 1024**3

Answer = tuple[int, dict | list | bytes]


# ---- a fake engine ---------------------------------------------------------------------------


class FakeEngine:
    """A MockTransport handler: answers /version with `api`, other calls from `answers`, records requests."""

    def __init__(
        self,
        api: str = "1.41",
        answers: dict[tuple[str, str], Answer] | None = None,
        min_api: str = "1.24",
        components: tuple[str, ...] = ("Engine",),
    ) -> None:
        self.api, self.min_api, self.components = api, min_api, components
        self.answers = answers or {}
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.path == "/version":
            return httpx.Response(
                200,
                json={
                    "ApiVersion": self.api,
                    "MinAPIVersion": self.min_api,
                    "Version": "24.0.7",
                    "Components": [{"Name": name} for name in self.components],
                },
            )
        for (method, suffix), (status, body) in self.answers.items():
            if request.method == method and request.url.path.endswith(suffix):
                if isinstance(body, bytes):
                    return httpx.Response(status, content=body)
                return httpx.Response(status, json=body)
        return httpx.Response(200, json={})

    def client(self, call_deadline_s: float = 5.0) -> DockerClient:
        """A DockerClient that talks to this fake engine."""
        return DockerClient(SOCKET, call_deadline_s, transport=httpx.MockTransport(self))

    def last(self) -> httpx.Request:
        """The most recent request."""
        return self.seen[-1]


# ---- API version negotiation -------------------------------------------------------------------


async def test_connect_uses_the_daemon_version_when_older_than_the_cap() -> None:
    """Daemon API 1.41: /version is unversioned, later calls go to /v1.41/..."""
    engine = FakeEngine("1.41", {("GET", "/json"): (200, {"Id": "sha256:abc"})})
    async with engine.client() as client:
        info = await client.connect()
        assert info["Version"] == "24.0.7" and client.api_version == "1.41"
        assert (await client.image("vllm:local"))["Id"] == "sha256:abc"
    assert [r.url.path for r in engine.seen] == ["/version", "/v1.41/images/vllm:local/json"]


async def test_connect_caps_a_newer_daemon_at_max_api_version() -> None:
    """Daemon API 1.47 is capped at MAX_API_VERSION (1.45)."""
    engine = FakeEngine("1.47")
    async with engine.client() as client:
        await client.connect()
        assert client.api_version == MAX_API_VERSION == "1.45"
        await client.inspect("0123456789abcdef")
    assert engine.last().url.path == "/v1.45/containers/0123456789abcdef/json"


async def test_connect_respects_a_daemon_minimum_above_the_cap() -> None:
    """Docker 29 (API 1.52, minimum 1.44) would refuse 1.43: the minimum wins over the cap when higher."""
    engine = FakeEngine("1.52", min_api="1.46")
    async with engine.client() as client:
        await client.connect()
        assert client.api_version == "1.46" and not client.is_podman
    podman = FakeEngine("1.41", components=("Podman Engine", "Conmon"))
    async with podman.client() as client:
        await client.connect()
        assert client.is_podman


async def test_a_body_that_is_not_json_is_a_docker_error_not_a_crash() -> None:
    """A proxy page or garbage where JSON belongs: DockerError naming the call, for every parsed call."""
    engine = FakeEngine("1.41", {("GET", "/json"): (200, b"<html>proxy</html>"), ("POST", "/create"): (201, {})})
    async with engine.client() as client:
        await client.connect()
        with pytest.raises(DockerError, match=r"inspect container .*not a JSON dict"):
            await client.inspect("0123456789abcdef")
        with pytest.raises(DockerError, match=r"list containers: .*not a JSON list"):
            await client.containers(["gb10.owner"])
        with pytest.raises(DockerError, match="without a container Id"):
            await client.create("n", {})


async def test_connect_refuses_an_engine_older_than_the_minimum() -> None:
    """Daemon API 1.30 (no DeviceRequests) is an error that says to upgrade."""
    async with FakeEngine("1.30").client() as client:
        with pytest.raises(DockerError, match="upgrade") as info:
            await client.connect()
    assert "1.30" in str(info.value) and str(SOCKET) in str(info.value)
    assert client.api_version is None


async def test_calls_before_connect_are_refused() -> None:
    """A versioned call before connect() says connect must run first."""
    engine = FakeEngine()
    async with engine.client() as client:
        with pytest.raises(DockerError, match=r"connect\(\) must run"):
            await client.image("x:y")
    assert engine.seen == []


# ---- errors an operator can act on ----------------------------------------------------------------


async def _image(client: DockerClient) -> object:
    return await client.image("x:y")


async def _create(client: DockerClient) -> object:
    return await client.create("n", {"Image": "x:y"})


async def _inspect(client: DockerClient) -> object:
    return await client.inspect("0123456789abcdef")


CONFLICT = 'Conflict. The container name "/n" is already in use by container "deadbeef". Remove it first.'
NO_GPU = 'could not select device driver "" with capabilities: [[gpu]]'
PODMAN_404 = {"cause": "image not known", "message": "failed to find image x:y: image not known", "response": 404}


@pytest.mark.parametrize(
    ("call", "path", "status", "body", "expected"),
    [
        (_image, "/images/x:y/json", 404, {"message": "No such image: x:y"}, ["No such image: x:y", "never pulls"]),
        (_create, "/containers/create", 409, {"message": CONFLICT}, ["already in use", "docker rm"]),
        (_inspect, "/json", 500, {"message": "boom in the daemon"}, ["boom in the daemon", "daemon", "journalctl"]),
        (_create, "/containers/create", 500, {"message": NO_GPU}, ["NVIDIA Container Toolkit", 'gpus = "none"']),
        (_inspect, "/json", 502, b"<html>Bad Gateway</html>", ["answered 502", "Bad Gateway"]),
        (_inspect, "/json", 500, b"", ["answered 500: HTTP 500"]),
        (_image, "/images/x:y/json", 404, PODMAN_404, ["failed to find image x:y", "never pulls"]),
        (_inspect, "/json", 404, {"message": "No such container: 0123"}, ["the container is gone"]),
    ],
)
async def test_error_bodies_become_messages_that_say_what_to_do(
    call: Callable[[DockerClient], Awaitable[object]], path: str, status: int, body: dict | bytes, expected: list[str]
) -> None:
    """Docker's and Podman's error bodies turn into DockerErrors naming the call and the next step."""
    method = "POST" if call is _create else "GET"
    async with FakeEngine(answers={(method, path): (status, body)}).client() as client:
        await client.connect()
        with pytest.raises(DockerError) as info:
            await call(client)
    assert info.value.status == status
    message = str(info.value)
    assert f"Docker answered {status}" in message
    for fragment in expected:
        assert fragment in message


def test_explain_picks_the_hint_by_status_and_words() -> None:
    """explain() keeps the action and the daemon's words, then adds one hint."""
    text = explain(400, "invalid reference format", "create container n")
    assert text.startswith("create container n: Docker answered 400: invalid reference format; ")
    assert "[serve] table" in text
    assert "docker ps -a" in explain(409, "Container abc is not running", "kill container abc")
    assert "docker info" in explain(418, "teapot", "x")


async def test_kill_treats_not_running_as_success_and_other_errors_as_errors() -> None:
    """kill(): 409 'is not running' is fine; a 500 still raises; the signal travels as a param."""
    engine = FakeEngine(answers={("POST", "/kill"): (409, {"message": "Container abc is not running"})})
    async with engine.client() as client:
        await client.connect()
        await client.kill("abc")
    assert engine.last().url.path == "/v1.41/containers/abc/kill"
    assert engine.last().url.params["signal"] == "SIGKILL"
    engine = FakeEngine(answers={("POST", "/kill"): (500, {"message": "daemon is sad"})})
    async with engine.client() as client:
        await client.connect()
        with pytest.raises(DockerError) as info:
            await client.kill("abc", signal="SIGTERM")
    assert info.value.status == 500 and engine.last().url.params["signal"] == "SIGTERM"


async def test_stop_sends_the_grace_period_as_whole_seconds() -> None:
    """stop() sends `t` as an integer (never 10.0 or 2.6)."""
    engine = FakeEngine(answers={("POST", "/stop"): (304, b"")})
    async with engine.client() as client:
        await client.connect()
        await client.stop("abc", 10.0)
        assert engine.last().url.params["t"] == "10"
        await client.stop("abc", 2.6)
        assert engine.last().url.params["t"] == "3"
        await client.stop("abc", -1)
        assert engine.last().url.params["t"] == "0"
    assert engine.last().url.path == "/v1.41/containers/abc/stop"


async def test_containers_sends_labels_as_a_json_filter() -> None:
    """containers() sends {"label": [...]} as JSON in `filters`, and `all` as 0/1."""
    engine = FakeEngine(answers={("GET", "/containers/json"): (200, [{"Id": "a"}, {"Id": "b"}])})
    async with engine.client() as client:
        await client.connect()
        found = await client.containers(["gb10.owner"])
        params = engine.last().url.params
        assert json.loads(params["filters"]) == {"label": ["gb10.owner"]} and params["all"] == "0"
        await client.containers(["gb10.owner", "gb10.run-id=r1"], include_stopped=True)
        params = engine.last().url.params
        assert json.loads(params["filters"]) == {"label": ["gb10.owner", "gb10.run-id=r1"]} and params["all"] == "1"
    assert [c["Id"] for c in found] == ["a", "b"]
    assert engine.last().url.path == "/v1.41/containers/json"


async def test_create_start_remove_send_the_right_requests() -> None:
    """create() posts the config as JSON with ?name=; start() accepts 304; remove() accepts 404."""
    engine = FakeEngine(
        answers={
            ("POST", "/containers/create"): (201, {"Id": "f00d" * 16, "Warnings": []}),
            ("POST", "/start"): (304, b""),
            ("DELETE", "/containers/gone"): (404, {"message": "No such container: gone"}),
        }
    )
    async with engine.client() as client:
        await client.connect()
        ident = await client.create("gb10-x", {"Image": "x:y", "Labels": {"gb10.arm": "a"}})
        create = engine.last()
        await client.start(ident)
        await client.remove("gone")
    assert ident == "f00d" * 16
    assert create.url.params["name"] == "gb10-x" and create.headers["content-type"] == "application/json"
    assert json.loads(create.content) == {"Image": "x:y", "Labels": {"gb10.arm": "a"}}
    assert [(r.method, r.url.path) for r in engine.seen[2:]] == [
        ("POST", f"/v1.41/containers/{ident}/start"),
        ("DELETE", "/v1.41/containers/gone"),
    ]


async def test_an_unreachable_socket_is_named_in_the_error() -> None:
    """A transport error (daemon not listening) becomes a DockerError naming the socket."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async with DockerClient(SOCKET, 1.0, transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(DockerError) as info:
            await client.connect()
    message = str(info.value)
    assert str(SOCKET) in message and "ConnectError" in message and "is the daemon running" in message
    assert info.value.status is None


@pytest.mark.serial  # a 2 s bound
async def test_a_daemon_that_never_answers_hits_the_call_deadline() -> None:
    """A call that hangs ends as 'did not answer within 0.2 s', well under 2 s."""

    async def hang(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/version":
            return httpx.Response(200, json={"ApiVersion": "1.43"})
        await asyncio.sleep(30)
        return httpx.Response(200, json={})

    async with DockerClient(SOCKET, call_deadline_s=0.2, transport=httpx.MockTransport(hang)) as client:
        await client.connect()
        began = time.monotonic()
        with pytest.raises(DockerError, match=r"did not answer within 0\.2 s") as info:
            await client.inspect("abc")
        elapsed = time.monotonic() - began
    assert elapsed < 2.0
    assert str(SOCKET) in str(info.value)


class ChunkedBody(httpx.AsyncByteStream):
    """A response body that arrives in the given chunks, as a live log stream does."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


async def test_follow_logs_yields_the_raw_stream_and_errors_explain() -> None:
    """follow_logs() yields the multiplexed bytes (LogFrames decodes them); a 404 is a DockerError."""
    stream = frame(1, b"INFO ready\n") + frame(2, b"WARN slow\n")
    engine = FakeEngine(answers={("GET", "/gone/logs"): (404, {"message": "No such container: gone"})})

    def logs(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/abc/logs"):
            engine.seen.append(request)
            return httpx.Response(200, stream=ChunkedBody([stream[:5], stream[5:20], stream[20:]]))
        return engine(request)

    async with DockerClient(SOCKET, 5.0, transport=httpx.MockTransport(logs)) as client:
        await client.connect()
        frames = LogFrames()
        decoded = [f async for chunk in client.follow_logs("abc") for f in frames.feed(chunk)]
        assert engine.last().url.params["follow"] == "1"
        with pytest.raises(DockerError, match="the container is gone") as info:
            async for _ in client.follow_logs("gone"):
                pass
    assert decoded == [(1, b"INFO ready\n"), (2, b"WARN slow\n")]
    assert info.value.status == 404


# ---- finding the socket -------------------------------------------------------------------------


def test_find_socket_prefers_an_explicit_path() -> None:
    """serve.socket wins over DOCKER_HOST, with or without unix://."""
    env = {"DOCKER_HOST": "tcp://10.0.0.1:2375"}
    assert find_socket("/srv/docker.sock", env) == Path("/srv/docker.sock")
    assert find_socket("unix:///srv/docker.sock", env) == Path("/srv/docker.sock")


def test_find_socket_reads_docker_host() -> None:
    """DOCKER_HOST=unix:///x is /x; a tcp:// DOCKER_HOST is refused with a hint to unset it."""
    assert find_socket(None, {"DOCKER_HOST": "unix:///x"}) == Path("/x")
    with pytest.raises(DockerError, match="unset DOCKER_HOST") as info:
        find_socket(None, {"DOCKER_HOST": "tcp://10.0.0.1:2375"})
    assert "tcp://10.0.0.1:2375" in str(info.value)


def test_find_socket_falls_back_to_podman_then_lists_what_it_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No DOCKER_HOST: the default socket, then Podman's rootless one; none: an error listing all."""
    default = tmp_path / "docker.sock"
    monkeypatch.setattr(docker_api, "DEFAULT_SOCKET", default)
    env = {"XDG_RUNTIME_DIR": str(tmp_path / "xdg")}
    rootless = tmp_path / "xdg" / "podman" / "podman.sock"
    if not Path("/run/podman/podman.sock").exists():
        with pytest.raises(DockerError) as info:
            find_socket(None, env)
        message = str(info.value)
        assert str(default) in message and str(rootless) in message and "/run/podman/podman.sock" in message
        assert "DOCKER_HOST=unix://" in message
    rootless.parent.mkdir(parents=True)
    rootless.touch()
    assert find_socket(None, env) == rootless
    default.touch()
    assert find_socket(None, env) == default


def test_podman_sockets_rootless_first() -> None:
    """Podman's rootless socket comes from XDG_RUNTIME_DIR (or /run/user/UID), then the rootful one."""
    assert podman_sockets({"XDG_RUNTIME_DIR": "/run/user/7"}) == [
        Path("/run/user/7/podman/podman.sock"),
        Path("/run/podman/podman.sock"),
    ]
    assert podman_sockets({})[0].parts[:3] == ("/", "run", "user")


# ---- log frames ---------------------------------------------------------------------------------


def frame(stream: int, payload: bytes) -> bytes:
    """One multiplexed log frame: stream id, three zero bytes, big-endian size, payload."""
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


MUX = frame(1, b"hello\n") + frame(2, b"warn: (x)\n") + frame(1, b"") + frame(2, b"") + frame(1, b"bye")
MUX_FRAMES = [(1, b"hello\n"), (2, b"warn: (x)\n"), (1, b""), (2, b""), (1, b"bye")]


def test_log_frames_survive_a_split_at_every_byte() -> None:
    """Two feeds cut anywhere decode to the same frames, zero-size ones included."""
    for cut in range(len(MUX) + 1):
        frames = LogFrames()
        assert frames.feed(MUX[:cut]) + frames.feed(MUX[cut:]) == MUX_FRAMES, cut
        assert frames.raw is False and frames.rest() == b""


def test_log_frames_survive_three_way_splits_and_single_bytes() -> None:
    """Three feeds cut at any two places, and one byte at a time, decode the same."""
    for first in range(len(MUX) + 1):
        for second in range(first, len(MUX) + 1):
            frames = LogFrames()
            out = frames.feed(MUX[:first]) + frames.feed(MUX[first:second]) + frames.feed(MUX[second:])
            assert out == MUX_FRAMES, (first, second)
    frames = LogFrames()
    assert [f for i in range(len(MUX)) for f in frames.feed(MUX[i : i + 1])] == MUX_FRAMES


def test_a_tty_stream_passes_through_raw() -> None:
    """A container with a TTY sends bytes with no headers: they pass through as stream 0."""
    frames = LogFrames()
    assert frames.feed(b"INFO: st") == [(0, b"INFO: st")]
    assert frames.raw is True
    assert frames.feed(b"arted\n") == [(0, b"arted\n")]
    assert frames.feed(b"") == []
    short = LogFrames()
    assert short.feed(b"hi\n") == [] and short.raw is None
    assert short.rest() == b"hi\n" and short.rest() == b""


def test_rest_returns_a_truncated_tail() -> None:
    """A stream that ends mid-frame leaves the incomplete frame in rest()."""
    cut = frame(2, b"partial payload")[:-4]
    frames = LogFrames()
    assert frames.feed(frame(1, b"complete") + cut) == [(1, b"complete")]
    assert frames.rest() == cut
    assert frames.rest() == b""


# ---- exits and state ------------------------------------------------------------------------------


def test_an_oom_kill_is_named_with_its_evidence() -> None:
    """OOMKilled=true -> OOM-killed, with the cgroup count in the detail; it wins over a stop in progress."""
    info = classify_exit({"ExitCode": 137, "OOMKilled": True}, None, 2)
    assert info == ExitInfo(137, "OOM-killed", "OOMKilled=true; cgroup oom_kill 2")
    assert info.describe() == "OOM-killed (exit code 137); OOMKilled=true; cgroup oom_kill 2"
    assert classify_exit({"ExitCode": 137, "OOMKilled": True}, "terminated", None).how == "OOM-killed"


def test_outside_kills_and_our_own_stops_are_told_apart() -> None:
    """137 with no stop is an outside SIGKILL; with a stop it is the grace period or our kill."""
    outside = classify_exit({"ExitCode": 137, "OOMKilled": False}, None, 0)
    assert outside.how == "killed by SIGKILL from outside the runner" and outside.detail == ""
    assert outside.describe() == "killed by SIGKILL from outside the runner (exit code 137)"
    assert classify_exit({"ExitCode": 143}, None, None).how == "killed by SIGTERM from outside the runner"
    graced = classify_exit({"ExitCode": 137}, "terminated", None)
    assert "grace period" in graced.how
    assert classify_exit({"ExitCode": 143}, "terminated", None).how == "terminated"
    assert classify_exit({"ExitCode": 137}, "killed", None) == ExitInfo(137, "killed", "")


def test_a_clean_or_failed_exit_is_exited() -> None:
    """Exit 0 or 1 with no stop is 'exited'; Error is noted; a missing code is None."""
    assert classify_exit({"ExitCode": 0}, None, None).describe() == "exited (exit code 0)"
    failed = classify_exit({"ExitCode": 1, "Error": "cuda init failed"}, None, 1)
    assert failed.describe() == "exited (exit code 1); cgroup oom_kill 1; error: cuda init failed"
    assert classify_exit({}, None, None) == ExitInfo(None, "exited", "")


def test_container_state_picks_the_fields_an_operator_reads() -> None:
    """container_state() flattens inspect data; empty errors and pid 0 become None."""
    data = {
        "State": {
            "Status": "exited",
            "Running": False,
            "ExitCode": 137,
            "OOMKilled": True,
            "Error": "",
            "Pid": 0,
            "Health": {"Status": "unhealthy"},
            "StartedAt": "2024-01-01T00:00:00Z",
            "FinishedAt": "2024-01-01T00:01:00Z",
        },
        "RestartCount": 0,
    }
    assert container_state(data) == {
        "status": "exited",
        "running": False,
        "exit_code": 137,
        "oom_killed": True,
        "error": None,
        "health": "unhealthy",
        "pid": None,
        "started_at": "2024-01-01T00:00:00Z",
        "finished_at": "2024-01-01T00:01:00Z",
        "restart_count": 0,
    }
    assert container_state({})["running"] is False and container_state({})["status"] is None


# ---- the container config -------------------------------------------------------------------------

COMMAND = ["vllm", "serve", "--host", "{host}", "--port", "{port}", "--env-dir", "{env_dir}"]


def docker_runtime(tmp_path: Path, env: dict[str, str] | None = None, **fields: object) -> DockerRuntime:
    """A DockerRuntime for arm split8 of run r1, its serve dir under tmp_path."""
    spec = DockerServe.model_validate({"kind": "docker", "image": "vllm:local", "command": COMMAND, **fields})
    return DockerRuntime(
        spec,
        {"CUTE_WO_SPLIT": "8"} if env is None else env,
        run_id="r1",
        arm="split8",
        mode="primary",
        serve_dir=tmp_path / "serve",
        resolve=lambda p: Path(p),
        owner=Owner("h", 1, 2),
    )


def test_config_labels_and_lifecycle(tmp_path: Path) -> None:
    """The container carries the run's labels, OomScoreAdj 1000, no restart, no auto-remove."""
    rt = docker_runtime(tmp_path)
    config = rt._config(rt._binds())
    assert config["Image"] == "vllm:local"
    assert config["Labels"] == {
        "gb10.run-id": "r1",
        "gb10.arm": "split8",
        "gb10.mode": "primary",
        "gb10.owner": "h/1/2",
    }
    host = config["HostConfig"]
    assert host["OomScoreAdj"] == 1000
    assert host["RestartPolicy"] == {"Name": "no"}
    assert host["AutoRemove"] is False
    assert host["IpcMode"] == "host"
    assert config["Tty"] is False and "Entrypoint" not in config
    assert rt.name.startswith("gb10-r1-split8-primary-")


def test_config_env_and_binds(tmp_path: Path) -> None:
    """Env holds the arm env and GB10_ENV_DIR; the ENV dir is the first bind, read-only; mounts follow."""
    models, cache = tmp_path / "models", tmp_path / "cache"
    models.mkdir()
    cache.mkdir()
    rt = docker_runtime(
        tmp_path,
        {"CUTE_WO_SPLIT": "8", "GB10_ENV_DIR": "/elsewhere"},
        mounts=[f"{models}:/models:ro", f"{cache}:/root/.cache"],
        env_mount="/run/gb10",
    )
    config = rt._config(rt._binds())
    assert config["Env"] == ["CUTE_WO_SPLIT=8", "GB10_ENV_DIR=/run/gb10"]
    serve = (tmp_path / "serve").resolve()
    assert config["HostConfig"]["Binds"] == [
        f"{serve}/env:/run/gb10:rw",  # the vLLM plugin writes its reports beside the sentinel ...
        f"{serve}/env/ENV:/run/gb10/ENV:ro",  # ... which the container cannot change
        f"{serve}/@profile:/gb10/profile:rw",
        f"{models}:/models:ro",
        f"{cache}:/root/.cache:rw",
    ]
    assert config["Cmd"][-1] == "/run/gb10"


def test_config_host_network_fills_the_picked_port(tmp_path: Path) -> None:
    """network = host: the server binds {host}:{port} with the runner's free port; nothing is published."""
    rt = docker_runtime(tmp_path)
    config = rt._config(rt._binds())
    assert config["HostConfig"]["NetworkMode"] == "host"
    assert config["Cmd"] == ["vllm", "serve", "--host", "127.0.0.1", "--port", str(rt.port), "--env-dir", "/gb10/env"]
    assert "PortBindings" not in config["HostConfig"] and "ExposedPorts" not in config
    assert rt.base_url == f"http://127.0.0.1:{rt.port}"


def test_config_bridge_network_publishes_on_loopback(tmp_path: Path) -> None:
    """network = bridge: {port} is container_port, {host} 0.0.0.0, published on 127.0.0.1 only."""
    rt = docker_runtime(tmp_path, network="bridge", container_port=9000, entrypoint=["/bin/sh", "-c", "{port}"])
    config = rt._config(rt._binds())
    host = config["HostConfig"]
    assert host["NetworkMode"] == "bridge"
    assert config["Cmd"][2:6] == ["--host", "0.0.0.0", "--port", "9000"]
    assert config["Entrypoint"] == ["/bin/sh", "-c", "9000"]
    assert config["ExposedPorts"] == {"9000/tcp": {}}
    assert host["PortBindings"] == {"9000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(rt.port)}]}
    assert rt.base_url == f"http://127.0.0.1:{rt.port}"


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        ("all", [{"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}]),
        (2, [{"Driver": "", "Count": 2, "Capabilities": [["gpu"]]}]),
        ("none", None),
    ],
)
def test_config_gpu_requests(tmp_path: Path, gpus: str | int, expected: list | None) -> None:
    """gpus all -> Count -1, a number -> that count, none -> no DeviceRequests."""
    rt = docker_runtime(tmp_path, gpus=gpus)
    assert rt._config(rt._binds())["HostConfig"].get("DeviceRequests") == expected


def test_config_sizes_are_bytes_and_swap_equals_memory(tmp_path: Path) -> None:
    """shm_size and memory_limit become bytes; MemorySwap == Memory (no swap on top)."""
    rt = docker_runtime(tmp_path, ipc="private", shm_size="16g", memory_limit="1.5GiB")
    host = rt._config(rt._binds())["HostConfig"]
    assert host["ShmSize"] == 16 * GIB
    assert host["Memory"] == host["MemorySwap"] == int(1.5 * GIB)
    assert host["IpcMode"] == "private"
    plain = docker_runtime(tmp_path)._config([])["HostConfig"]
    assert "ShmSize" not in plain and "Memory" not in plain and "MemorySwap" not in plain


def test_a_missing_mount_source_is_an_error_naming_serve_mounts(tmp_path: Path) -> None:
    """A mount whose host path does not exist is refused (Docker would mount an empty dir)."""
    missing = tmp_path / "no-such-models"
    rt = docker_runtime(tmp_path, mounts=[f"{missing}:/models:ro"])
    with pytest.raises(DockerError) as info:
        rt._binds()
    assert str(info.value).startswith("serve.mounts: ")
    assert str(missing) in str(info.value) and "does not exist" in str(info.value)


# ---- owners ---------------------------------------------------------------------------------------


def fake_stat(proc: Path, pid: int, comm: str, start_ticks: int) -> None:
    """Write proc/<pid>/stat with `comm` as field 2 and `start_ticks` as field 22."""
    after = ["S", "1", str(pid), str(pid), "0", "-1", "4194560"] + [str(n) for n in range(8, 20)]
    after += [str(start_ticks), "123456789", "42"]
    assert len(after) == 22 and after[19] == str(start_ticks)  # fields 3.. ; field 22 is index 19
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "stat").write_text(f"{pid} ({comm}) {' '.join(after)}\n")


def test_process_start_ticks_reads_field_22_past_a_tricky_comm(tmp_path: Path) -> None:
    """Field 22 is found even when the command name holds spaces and parentheses."""
    proc = tmp_path / "proc"
    fake_stat(proc, 100, "python3", 5555)
    fake_stat(proc, 200, "vllm (worker) 1 2 3", 7777)
    fake_stat(proc, 300, "a) S 1 (b", 9999)
    assert process_start_ticks(100, proc) == 5555
    assert process_start_ticks(200, proc) == 7777
    assert process_start_ticks(300, proc) == 9999
    assert process_start_ticks(400, proc) is None


def test_owner_label_round_trips_and_bad_labels_are_none() -> None:
    """HOST/PID/START parses back; anything else is None."""
    owner = Owner("spark-01.lan", 4321, 987654)
    assert Owner.parse(owner.label) == owner
    assert Owner.parse("a/b/12/34") == Owner("a/b", 12, 34)
    for bad in ("", "host", "host/12", "host/x/34", "host/12/", "/12/34", "host/12/3.5"):
        assert Owner.parse(bad) is None, bad


def test_owner_alive_checks_pid_and_start_time(tmp_path: Path) -> None:
    """Alive only when the pid runs with the same start time; another host cannot be told."""
    proc = tmp_path / "proc"
    fake_stat(proc, 4321, "gb10 (console)", 1000)
    assert Owner("h", 4321, 1000).alive("h", proc) is True
    assert Owner("h", 4321, 999).alive("h", proc) is False  # pid reused by a newer process
    assert Owner("h", 9999, 1000).alive("h", proc) is False  # gone
    assert Owner("other", 4321, 1000).alive("h", proc) is None
    assert Owner(socket.gethostname(), 4321, 1000).alive(None, proc) is True


def test_run_labels() -> None:
    """Every container carries run id, arm, mode and owner."""
    assert run_labels("r", "a", "supplementary", Owner("h", 1, 2)) == {
        "gb10.run-id": "r",
        "gb10.arm": "a",
        "gb10.mode": "supplementary",
        "gb10.owner": "h/1/2",
    }


# ---- memory cgroups -------------------------------------------------------------------------------


def fake_proc_cgroup(tmp_path: Path, pid: int, text: str) -> Path:
    """proc/<pid>/cgroup under tmp_path; returns the proc root."""
    proc = tmp_path / "proc"
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "cgroup").write_text(text)
    return proc


def test_cgroup_v1_reads_oom_kill_from_oom_control(tmp_path: Path) -> None:
    """v1: the memory controller's directory, oom_kill from memory.oom_control."""
    proc = fake_proc_cgroup(tmp_path, 77, "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/system.slice\n")
    root = tmp_path / "sys" / "fs" / "cgroup"
    group = root / "memory" / "docker" / "abc"
    group.mkdir(parents=True)
    found = memory_cgroup(77, proc=proc, root=root)
    assert found == MemoryCgroup(group, 1)
    assert found.oom_kills() is None  # no memory.oom_control yet: unknown, not 0
    (group / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    assert found.oom_kills() == 3
    (group / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")  # kernel < 4.13
    assert found.oom_kills() is None


def test_cgroup_v2_reads_oom_kill_from_memory_events(tmp_path: Path) -> None:
    """v2: the unified path with memory.events; oom_kill 0 is 0, not None."""
    proc = fake_proc_cgroup(tmp_path, 88, "0::/system.slice/docker-abc.scope\n")
    root = tmp_path / "sys" / "fs" / "cgroup"
    group = root / "system.slice" / "docker-abc.scope"
    group.mkdir(parents=True)
    assert memory_cgroup(88, proc=proc, root=root) is None  # no memory controller enabled there
    events = group / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 12\noom 0\noom_kill 0\noom_group_kill 0\n")
    found = memory_cgroup(88, proc=proc, root=root)
    assert found == MemoryCgroup(group, 2)
    assert found.oom_kills() == 0
    events.write_text("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 1\n")
    assert found.oom_kills() == 2
    events.unlink()
    assert found.oom_kills() is None


def test_cgroup_unknowns_are_none(tmp_path: Path) -> None:
    """No such pid, or a v1 memory cgroup whose directory is gone: None."""
    root = tmp_path / "sys" / "fs" / "cgroup"
    assert memory_cgroup(12345, proc=tmp_path / "proc", root=root) is None
    proc = fake_proc_cgroup(tmp_path, 99, "4:memory:/docker/gone\n")
    assert memory_cgroup(99, proc=proc, root=root) is None


# ---- plans: sizes and the [serve] table ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16g", 16 * GIB),
        ("512m", 512 * 1024**2),
        ("1.5GiB", int(1.5 * GIB)),
        ("100 GB", 100 * GIB),
        ("64k", 64 * 1024),
        ("1t", 1024**4),
        ("4096", 4096),
        (8192, 8192),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    """Sizes in Docker's units (powers of 1024), or a byte count."""
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "g", "16x", "-1g", "sixteen"])
def test_parse_size_rejects_what_is_not_a_size(text: str) -> None:
    """Anything else says how to write a size."""
    with pytest.raises(ValueError, match="16g, 512m or a byte count"):
        parse_size(text)


PLAN = """name = "docker-mini"

[serve]
{serve}

[[arms]]
name = "split1"
env = {{ CUTE_WO_SPLIT = "1" }}

[[phases]]
name = "replay"
kind = "sharegpt"
requests = 2
"""

DOCKER_SERVE = """kind = "docker"
image = "vllm:local"
command = ["vllm", "serve", "--host", "{host}", "--port", "{port}"]"""


def plan_file(tmp_path: Path, serve: str) -> Path:
    """A one-arm plan with `serve` as the body of its [serve] table."""
    path = tmp_path / "plan.toml"
    path.write_text(PLAN.format(serve=serve))
    return path


def line_of(path: Path, start: str) -> int:
    """The 1-based line of `path` that starts with `start`."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(start))


def plan_error(path: Path) -> str:
    """The ConfigFileError text load_plan raises for `path`."""
    with pytest.raises(ConfigFileError) as info:
        load_plan(path)
    return str(info.value)


def test_a_docker_serve_table_loads(tmp_path: Path) -> None:
    """kind = docker with every field set validates into a DockerServe."""
    serve = (
        DOCKER_SERVE
        + '\ngpus = 2\nipc = "private"\nshm_size = "16g"\nmemory_limit = "100g"\nmounts = ["~/models:/models:ro"]'
        + '\nsocket = "unix:///run/docker.sock"\nenv = { VLLM_LOGGING_LEVEL = "DEBUG" }'
    )
    spec = load_plan(plan_file(tmp_path, serve)).plan.serve
    assert isinstance(spec, DockerServe)
    assert (spec.image, spec.gpus, spec.ipc, spec.shm_size) == ("vllm:local", 2, "private", "16g")
    assert spec.mounts == ["~/models:/models:ro"] and spec.env == {"VLLM_LOGGING_LEVEL": "DEBUG"}
    assert (spec.network, spec.env_mount, spec.ready_timeout_s, spec.stop_timeout_s) == ("host", "/gb10/env", 900, 30)


def test_a_docker_serve_without_image_names_the_field(tmp_path: Path) -> None:
    """A docker [serve] with no image: file, the [serve] line, serve.image."""
    path = plan_file(tmp_path, 'kind = "docker"\ncommand = ["--port", "{port}"]')
    assert f"{path}:{line_of(path, '[serve]')}: serve.image: required field is missing" in plan_error(path)


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ('mounts = ["/models"]', "serve.mounts", "HOST:CONTAINER"),
        ('mounts = ["/models:models:ro"]', "serve.mounts", "absolute CONTAINER path"),
        ('mounts = ["/models:/models:rx"]', "serve.mounts", "HOST:CONTAINER"),
        ("gpus = 0", "serve.gpus", "at least 1"),
        ('gpus = "some"', "serve.gpus", 'write "all", "none" or a GPU count'),
        ('network = "none"', "serve.network", "'host' or 'bridge'"),
        ('memory_limit = "lots"', "serve.memory_limit", "not a size"),
        ('env_mount = "gb10/env"', "serve.env_mount", "absolute path"),
        ("container_port = 70000", "serve.container_port", "65535"),
        ('engine_config = "x.toml"', "serve.engine_config", "unknown field"),
    ],
)
def test_bad_docker_fields_name_file_line_and_field(tmp_path: Path, extra: str, field: str, words: str) -> None:
    """Each bad field is reported as FILE:LINE: serve.FIELD: why."""
    path = plan_file(tmp_path, f"{DOCKER_SERVE}\n{extra}")
    text = plan_error(path)
    assert f"{path}:{line_of(path, extra.split(' ')[0] + ' ')}: {field}" in text
    assert words in text


def test_docker_model_rules_are_reported_on_the_serve_table(tmp_path: Path) -> None:
    """Host network without {port}, or shm_size with ipc = host, are refused with the reason."""
    path = plan_file(tmp_path, 'kind = "docker"\nimage = "vllm:local"\ncommand = ["vllm", "serve"]')
    assert f'{path}:{line_of(path, "[serve]")}: serve: with network = "host"' in plan_error(path)
    path = plan_file(tmp_path, 'kind = "docker"\nimage = "vllm:local"\ncommand = ["vllm", "serve", "--port", "{port}"]')
    assert "must contain {host} and {port}" in plan_error(path) and "0.0.0.0" in plan_error(path)
    path = plan_file(tmp_path, 'kind = "docker"\nimage = "vllm:local"\nnetwork = "bridge"')
    assert isinstance(load_plan(path).plan.serve, DockerServe)  # bridge: container_port is known
    path = plan_file(tmp_path, f'{DOCKER_SERVE}\nshm_size = "16g"')
    assert 'shm_size needs ipc = "private" or "shareable"' in plan_error(path)


def test_a_bad_gpus_value_reads_as_one_clean_problem(tmp_path: Path) -> None:
    """gpus = "some" is one problem at serve.gpus, without pydantic's union tags."""
    path = plan_file(tmp_path, f'{DOCKER_SERVE}\ngpus = "some"')
    text = plan_error(path)
    assert "literal[" not in text and "serve.gpus.int" not in text
    assert len(text.splitlines()) == 1


def test_gpus_true_is_refused(tmp_path: Path) -> None:
    """gpus = true is ambiguous (all? one?) and must be an error, not one GPU."""
    path = plan_file(tmp_path, f"{DOCKER_SERVE}\ngpus = true")
    assert "serve.gpus" in plan_error(path)


def test_a_memory_limit_in_bytes_loads(tmp_path: Path) -> None:
    """memory_limit = 17179869184 (a TOML integer byte count) is 16 GiB."""
    spec = load_plan(plan_file(tmp_path, f"{DOCKER_SERVE}\nmemory_limit = 17179869184")).plan.serve
    assert isinstance(spec, DockerServe) and parse_size(spec.memory_limit or "") == 16 * GIB


def test_an_external_serve_table_loads_and_trims_the_url(tmp_path: Path) -> None:
    """kind = external with a base URL validates; a trailing slash is dropped."""
    spec = load_plan(plan_file(tmp_path, 'kind = "external"\nurl = "http://127.0.0.1:8000/"')).plan.serve
    assert isinstance(spec, ExternalServe) and spec.url == "http://127.0.0.1:8000"


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:8000", "127.0.0.1:8000", "http://127.0.0.1:8000/v1", "http://"])
def test_a_bad_external_url_names_serve_url(tmp_path: Path, url: str) -> None:
    """A URL that is not an http(s) base URL is reported at its line as serve.url."""
    path = plan_file(tmp_path, f'kind = "external"\nurl = "{url}"')
    text = plan_error(path)
    assert f"{path}:{line_of(path, 'url = ')}: serve.url: " in text and "base URL" in text


def test_an_external_serve_without_url_names_serve_url(tmp_path: Path) -> None:
    """kind = external without url: serve.url is missing."""
    path = plan_file(tmp_path, 'kind = "external"')
    assert f"{path}:{line_of(path, '[serve]')}: serve.url: required field is missing" in plan_error(path)


def test_a_serve_table_without_kind_is_a_process(tmp_path: Path) -> None:
    """Plans written before other kinds existed still mean a local process."""
    path = write_plan(tmp_path)
    path.write_text(path.read_text().replace('kind = "process"\n', "", 1))
    assert 'kind = "process"' not in path.read_text()
    assert isinstance(load_plan(path).plan.serve, ProcessServe)


def test_an_unknown_serve_kind_is_named(tmp_path: Path) -> None:
    """kind = "kubernetes" is reported on the [serve] table with the kinds there are."""
    path = plan_file(tmp_path, 'kind = "kubernetes"')
    text = plan_error(path)
    assert f"{path}:{line_of(path, '[serve]')}: serve: " in text
    assert "'kubernetes'" in text and "'process', 'docker', 'external'" in text


def _shipped(name: str) -> Plan:
    """A shipped plan's model; with ../shared present, the whole load (dataset files too) must pass."""
    path = ROOT / "configs" / name
    if (ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl").is_file():
        return load_plan(path).plan
    with pytest.raises(ConfigFileError) as missing:
        load_plan(path)
    assert all("does not exist" in problem for problem in missing.value.problems)  # only the datasets
    return load_toml_model(path, Plan)


def test_the_wo_split_production_soak_plan_matches_nvllms() -> None:
    """nvllm image, Qwen3.5-27B-NVFP4, CUTE_WO_SPLIT 1/2/4/8, GSM8K-50, 5x ShareGPT, 5x long-decode, 2-concurrent."""
    plan = _shipped("wo-split-soak.toml")
    serve = plan.serve
    assert isinstance(serve, DockerServe) and serve.image.startswith("nvllm:gb10-") and serve.gpus == "all"
    assert any("Qwen3.5-27B-NVFP4" in part for part in serve.command)
    assert [a.env["CUTE_WO_SPLIT"] for a in plan.arms] == ["1", "2", "4", "8"]
    primary = {p.kind: p for p in plan.phases if p.mode == "primary"}
    assert primary["gsm8k"].questions == 50
    assert primary["sharegpt"].repeats == 5 and primary["longdecode"].repeats == 5
    assert primary["concurrent"].streams == 2
    modes = [s.mode for s in plan.sessions()]
    assert modes == ["primary"] * 4 + ["supplementary"] * 4  # every primary pass first


def test_the_phasee_three_leg_plan_has_its_three_legs() -> None:
    """lower8, phaseE-off and all-beta, each with primary passes before supplementary ones."""
    plan = _shipped("phasee-tax-3leg.toml")
    assert isinstance(plan.serve, DockerServe)
    assert [a.name for a in plan.arms] == ["lower8", "phaseE-off", "all-beta"]
    assert len({tuple(sorted(a.env.items())) for a in plan.arms}) == 3
    assert [s.mode for s in plan.sessions()] == ["primary"] * 3 + ["supplementary"] * 3
