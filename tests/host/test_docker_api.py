"""The container engine's API client without a daemon (runners/host/docker_api.py): version negotiation,
errors an operator can act on, each call's request, deadlines, log following, finding the socket, and the
multiplexed log frame decoder.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from runners.host import docker_api
from runners.host.docker_api import (
    MAX_API_VERSION,
    DockerClient,
    DockerError,
    LogFrames,
    explain,
    find_socket,
    lasting_refusal,
    podman_sockets,
)

SOCKET = Path("/run/test-engine/docker.sock")  # only ever named in messages; MockTransport does the talking

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


def test_lasting_refusals_are_those_no_retry_of_the_plan_can_change() -> None:
    """No such image (Docker's and Podman's words), no GPU runtime, a bind of a missing path: lasting; a name
    conflict, a container that is gone (even one named after a GPU) or a deadline: not."""
    lasting = [
        (404, "No such image: gb10-test/not-here:1"),
        (404, "failed to find image x:1: x:1: image not known"),
        (500, 'could not select device driver "" with capabilities: [[gpu]]'),
        (500, "failed to create task: nvidia-container-cli: initialization error: load library failed"),
        (400, 'invalid mount config for type "bind": bind source path does not exist: /models/nope'),
    ]
    passing = [
        (404, "No such container: gb10-gpu-soak-a-primary-1"),
        (409, 'Conflict. The container name "/x" is already in use'),
        (500, "context deadline exceeded"),
        (404, "page not found"),
    ]
    assert all(lasting_refusal(status, words) for status, words in lasting)
    assert not any(lasting_refusal(status, words) for status, words in passing)


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
