"""A small async client for the Docker Engine API (and Podman's compatible API) on a unix socket.

Every call runs under its own deadline: a daemon that accepts and never answers turns into a
DockerError that says which call, which socket and what to do, never a hang. The API version is
negotiated once with `GET /version`: the lower of the daemon's and MAX_API_VERSION, raised to the
daemon's MinAPIVersion where that is higher (Docker 29 refuses anything below 1.44). gb10-console
never pulls images: a missing image is an error that says how to provide it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from engine.deadlines import timeout

START_ENGINE_HINT = (
    "start the daemon (`sudo systemctl start docker`, or `systemctl --user start podman.socket`), or set "
    "DOCKER_HOST=unix:///path/to/socket (a plan: serve.socket)"
)
DEFAULT_SOCKET = Path("/var/run/docker.sock")
MAX_API_VERSION = "1.45"
MIN_API_VERSION = "1.40"  # DeviceRequests (the `--gpus` equivalent) arrived in 1.40
CALL_DEADLINE_S = 10.0


class DockerError(Exception):
    """A Docker call that failed; the message names the call, the socket and what to do next. `lasting`: no retry
    with the same plan on this host can change it (`lasting_refusal`)."""

    def __init__(self, message: str, status: int | None = None, lasting: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.lasting = lasting


def podman_sockets(environ: Mapping[str, str]) -> list[Path]:
    """Where Podman's Docker-compatible socket lives (rootless first, then rootful)."""
    runtime_dir = environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return [Path(runtime_dir) / "podman" / "podman.sock", Path("/run/podman/podman.sock")]


def find_socket(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The engine socket: `explicit` (the plan's serve.socket), DOCKER_HOST, the default, then Podman's.

    Raises DockerError when DOCKER_HOST is not a unix socket or no socket exists.
    """
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit.removeprefix("unix://")).expanduser()
    host = env.get("DOCKER_HOST", "")
    if host:
        if not host.startswith("unix://"):
            raise DockerError(
                f"DOCKER_HOST={host} is not a unix socket; gb10-console talks to the Docker or Podman engine "
                "over its local socket: unset DOCKER_HOST or set it to unix:///var/run/docker.sock"
            )
        return Path(host.removeprefix("unix://"))
    candidates = [DEFAULT_SOCKET, *podman_sockets(env)]
    for path in candidates:
        if path.exists():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise DockerError(f"no Docker or Podman socket found (tried {tried}); {START_ENGINE_HINT}")


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


def _error_message(resp: httpx.Response) -> str:
    """The daemon's own words: Docker sends {"message": ...}, Podman adds "cause"."""
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return resp.text.strip()[:300] or f"HTTP {resp.status_code}"
    if isinstance(body, dict):
        return str(body.get("message") or body.get("cause") or body)[:300]
    return str(body)[:300]


def _body(resp: httpx.Response, kind: type, action: str):
    """The response's JSON body, which must be a `kind` (dict or list); DockerError otherwise."""
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, kind):
        raise DockerError(
            f"{action}: the engine answered {resp.status_code} with a body that is not a JSON {kind.__name__}: "
            f"{resp.text[:200]!r}; is the socket really a Docker or Podman engine?"
        )
    return body


def lasting_refusal(status: int, message: str) -> bool:
    """True for a refusal that every start of the same plan on this host would meet: no such image, no GPU runtime,
    a mount Docker cannot make."""
    low = message.lower()
    no_image = status == 404 and ("no such image" in low or "image not known" in low)  # Docker, Podman
    no_gpu_runtime = "could not select device driver" in low or "nvidia-container-cli" in low
    bad_mount = "bind source path does not exist" in low or "invalid mount" in low or "invalid volume" in low
    return no_image or no_gpu_runtime or (status in (400, 500) and bad_mount)


def explain(status: int, message: str, action: str) -> str:
    """An operator-readable error for a failed API call: what failed, the daemon's words, what to do."""
    low = message.lower()
    if status == 404 and "image" in low:
        hint = (
            "gb10-console never pulls: load or build the image first (`docker load -i FILE`, `docker build`, "
            "or `docker pull` it yourself), or fix serve.image in the plan"
        )
    elif status == 404:
        hint = "the container is gone: something removed it (`docker rm`) while the runner was using it"
    elif status == 409 and ("already in use" in low or "conflict" in low):
        hint = (
            "a container with that name already exists; remove it with `docker rm NAME` "
            "(gb10-console only touches containers it labelled)"
        )
    elif status == 409:
        hint = "the container is not in a state that allows this (see `docker ps -a`)"
    elif "device driver" in low or "nvidia" in low or "gpu" in low:
        hint = (
            "Docker cannot give the container a GPU: install the NVIDIA Container Toolkit and run "
            '`sudo nvidia-ctk runtime configure --runtime=docker`, or set serve.gpus = "none"'
        )
    elif status == 400:
        hint = "Docker refused the request: check the [serve] table of the plan"
    elif status >= 500:
        hint = "the daemon failed; see its log (`journalctl -u docker` or `journalctl --user -u podman`)"
    else:
        hint = "see `docker info` and the daemon log"
    return f"{action}: Docker answered {status}: {message}; {hint}"


@dataclass
class LogFrames:
    """Incremental decoder of Docker's multiplexed log stream (8-byte header: stream, 0, 0, 0, size BE).

    A container created with a TTY sends raw bytes with no headers; the first bytes tell which.
    """

    raw: bool | None = None
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Decode what `data` completes: (stream, payload) pairs; stream 1 stdout, 2 stderr, 0 raw/stdin."""
        self._buf += data
        if self.raw is None and len(self._buf) >= 8:
            head = self._buf[:4]
            self.raw = not (head[0] in (0, 1, 2) and head[1:4] == b"\0\0\0")
        if self.raw:
            out, self._buf = bytes(self._buf), bytearray()
            return [(0, out)] if out else []
        frames = []
        while len(self._buf) >= 8:
            size = int.from_bytes(self._buf[4:8], "big")
            if len(self._buf) < 8 + size:
                break
            frames.append((self._buf[0], bytes(self._buf[8 : 8 + size])))
            del self._buf[: 8 + size]
        return frames

    def rest(self) -> bytes:
        """Bytes left over when the stream ended (a truncated frame, or a short raw stream)."""
        out, self._buf = bytes(self._buf), bytearray()
        return out


class DockerClient:
    """Docker Engine API calls over a unix socket, each under a deadline. Use as an async context manager."""

    def __init__(
        self,
        socket: Path,
        call_deadline_s: float = CALL_DEADLINE_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.socket = socket
        self.call_deadline_s = call_deadline_s
        self.api_version: str | None = None
        self.server: dict = {}
        self._http = httpx.AsyncClient(
            transport=transport or httpx.AsyncHTTPTransport(uds=str(socket)),
            base_url="http://docker",
            timeout=httpx.Timeout(call_deadline_s),
        )

    async def __aenter__(self) -> DockerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def connect(self) -> dict:
        """`GET /version` and pick the API version both sides speak; returns the daemon's version info."""
        action = "ask the daemon its version"
        info = _body(await self._call("GET", "/version", action=action, versioned=False), dict, action)
        server_api = str(info.get("ApiVersion", MIN_API_VERSION))
        if _version_tuple(server_api) < _version_tuple(MIN_API_VERSION):
            raise DockerError(
                f"the engine at {self.socket} speaks API {server_api}; gb10-console needs {MIN_API_VERSION} "
                "or newer (Docker 19.03+, Podman 3+): upgrade the engine"
            )
        chosen = min(server_api, MAX_API_VERSION, key=_version_tuple)
        self.api_version = max(chosen, str(info.get("MinAPIVersion", chosen)), key=_version_tuple)
        self.server = info
        return info

    @property
    def is_podman(self) -> bool:
        """True when the engine behind the socket is Podman (its /version names a Podman component)."""
        return any("podman" in str(c.get("Name", "")).lower() for c in self.server.get("Components") or [])

    def _path(self, path: str, versioned: bool) -> str:
        if not versioned:
            return path
        if self.api_version is None:
            raise DockerError("DockerClient.connect() must run before other calls")
        return f"/v{self.api_version}{path}"

    async def _call(
        self,
        method: str,
        path: str,
        *,
        action: str,
        params: dict | None = None,
        body: dict | None = None,
        deadline_s: float | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
        versioned: bool = True,
    ) -> httpx.Response:
        limit = deadline_s or self.call_deadline_s
        content = orjson.dumps(body) if body is not None else None
        headers = {"content-type": "application/json"} if body is not None else None
        try:
            async with timeout(limit):
                resp = await self._http.request(
                    method,
                    self._path(path, versioned),
                    params=params,
                    content=content,
                    headers=headers,
                    timeout=httpx.Timeout(limit + 1.0),
                )
        except (asyncio.TimeoutError, httpx.TimeoutException):
            raise DockerError(
                f"{action}: the engine at {self.socket} did not answer within {limit:g} s; "
                "the daemon is hung or overloaded (check `systemctl status docker` and its log)"
            ) from None
        except httpx.TransportError as exc:
            raise DockerError(
                f"{action}: cannot reach the engine at {self.socket} ({type(exc).__name__}: {exc}); "
                "is the daemon running? (`systemctl status docker`)"
            ) from None
        if resp.status_code not in ok:
            message = _error_message(resp)
            lasting = lasting_refusal(resp.status_code, message)
            raise DockerError(explain(resp.status_code, message, action), resp.status_code, lasting)
        return resp

    async def info(self) -> dict:
        """`docker info`: the daemon's runtimes, CDI spec directories and the rest (read by `doctor`)."""
        action = "ask the daemon its info"
        return _body(await self._call("GET", "/info", action=action), dict, action)

    async def image(self, ref: str) -> dict:
        """`docker image inspect REF`."""
        action = f"look up image {ref}"
        return _body(await self._call("GET", f"/images/{ref}/json", action=action), dict, action)

    async def create(self, name: str, config: dict) -> str:
        """Create a container called `name`; returns its id."""
        action = f"create container {name}"
        resp = await self._call("POST", "/containers/create", action=action, params={"name": name}, body=config)
        ident = _body(resp, dict, action).get("Id")
        if not isinstance(ident, str) or not ident:
            raise DockerError(f"{action}: the engine answered without a container Id: {resp.text[:200]}")
        return ident

    async def start(self, ident: str) -> None:
        """Start a created container (304 = already running is fine)."""
        await self._call("POST", f"/containers/{ident}/start", action=f"start container {ident[:12]}", ok=(204, 304))

    async def stop(self, ident: str, grace_s: float) -> None:
        """Ask the daemon to stop the container: its stop signal, then SIGKILL after `grace_s`."""
        await self._call(
            "POST",
            f"/containers/{ident}/stop",
            action=f"stop container {ident[:12]}",
            params={"t": max(0, round(grace_s))},
            deadline_s=grace_s + self.call_deadline_s + 10.0,  # the daemon waits for the exit too
            ok=(204, 304),
        )

    async def kill(self, ident: str, signal: str = "SIGKILL", deadline_s: float | None = None) -> None:
        """Send `signal` to the container; a container that is not running is not an error."""
        try:
            await self._call(
                "POST",
                f"/containers/{ident}/kill",
                action=f"kill container {ident[:12]}",
                params={"signal": signal},
                deadline_s=deadline_s,
            )
        except DockerError as exc:
            if exc.status != 409:  # 409: "is not running"
                raise

    async def inspect(self, ident: str, deadline_s: float | None = None) -> dict:
        """`docker inspect ID`."""
        action = f"inspect container {ident[:12]}"
        return _body(
            await self._call("GET", f"/containers/{ident}/json", action=action, deadline_s=deadline_s), dict, action
        )

    async def containers(self, labels: list[str], include_stopped: bool = False) -> list[dict]:
        """Containers carrying every label in `labels` (`key` or `key=value`)."""
        params = {"filters": orjson.dumps({"label": labels}).decode(), "all": "1" if include_stopped else "0"}
        action = "list containers"
        found = _body(await self._call("GET", "/containers/json", action=action, params=params), list, action)
        return [item for item in found if isinstance(item, dict)]

    async def remove(self, ident: str) -> None:
        """Remove a stopped container."""
        await self._call("DELETE", f"/containers/{ident}", action=f"remove container {ident[:12]}", ok=(204, 404))

    async def follow_logs(self, ident: str, since: int = 0) -> AsyncIterator[bytes]:
        """Raw (still multiplexed) log bytes as they come, until the container ends.

        Only connecting has a deadline; the stream itself lasts as long as the container, and the
        caller cancels it when it stops caring.
        """
        params = {"follow": "1", "stdout": "1", "stderr": "1", "since": str(since)}
        request = self._http.build_request(
            "GET",
            self._path(f"/containers/{ident}/logs", True),
            params=params,
            timeout=httpx.Timeout(self.call_deadline_s, read=None),
        )
        try:
            async with timeout(self.call_deadline_s):
                resp = await self._http.send(request, stream=True)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            raise DockerError(
                f"follow logs of {ident[:12]}: the engine at {self.socket} did not answer within "
                f"{self.call_deadline_s:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise DockerError(f"follow logs of {ident[:12]}: cannot reach {self.socket}: {exc}") from None
        try:
            if resp.status_code != 200:
                await resp.aread()
                raise DockerError(
                    explain(resp.status_code, _error_message(resp), f"follow logs of {ident[:12]}"), resp.status_code
                )
            async for chunk in resp.aiter_raw():
                yield chunk
        finally:
            await resp.aclose()
