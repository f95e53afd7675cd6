"""A real Docker engine for the tests: use the one running, or start dockerd with its data under /tmp.

Images are made locally with the Engine API's import (a busybox-static rootfs packed here), never
pulled. Where no engine can run (no dockerd binary, not root, no static busybox), the caller gets
a reason to skip with.

A service started here (dockerd, Podman's) is shared by every test session on this host that finds it
answering: pytest-xdist workers and other checkouts' suites. Each user holds a shared flock on the
service's `users.lock` while it uses it, and the last to let go stops it, so no session loses the engine
under its tests. It runs outside any session's host scope (`runners/host/scope.py`): it outlives the
session that started it on purpose, and the suite's leak check must not count it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from runners.host.docker_api import DEFAULT_SOCKET
from runners.host.owner import process_start_ticks
from runners.host.scope import HOST_SCOPE_VAR

DOCKERD_DIR = Path("/tmp/gb10-test-dockerd")
OWN_SOCKET = DOCKERD_DIR / "docker.sock"
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 20.0
BUSYBOX = Path("/bin/busybox")
IMAGE_REPO = "gb10-test/busybox"
APPLETS = ("sh", "httpd", "sleep", "cat", "echo", "head", "tr", "kill", "ls", "true", "env", "dd")
INSTALL_HINT = "apt-get install -y docker.io busybox-static"


@dataclass
class SharedService:
    """An engine service these tests start under `directory`, shared by every test session that uses it.

    `start.lock` (exclusive) serialises "find it or start it" against "let go of it and stop it if last";
    `users.lock` holds one shared lock per session using it; `service.pid` names the process these tests
    started (pid and start time in clock ticks, so a reused pid is never signalled).
    """

    directory: Path
    users_fd: int | None = None
    proc: subprocess.Popen | None = None

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold `start.lock` (no deadline on the wait: the holder only starts or stops a service, each bounded)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / "start.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def join(self) -> None:
        """Count this session as a user (call under `exclusive`)."""
        self.users_fd = os.open(self.directory / "users.lock", os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self.users_fd, fcntl.LOCK_SH)

    def started(self, proc: subprocess.Popen) -> None:
        """Record `proc` as the service these tests started (call under `exclusive`)."""
        self.proc = proc
        (self.directory / "service.pid").write_text(f"{proc.pid} {process_start_ticks(proc.pid)}\n")

    def leave(self) -> None:
        """Stop counting this session; the last user stops the service these tests started."""
        if self.users_fd is None:
            return
        with self.exclusive():
            os.close(self.users_fd)  # releases this session's shared lock
            self.users_fd = None
            probe = os.open(self.directory / "users.lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another session still uses it
            finally:
                os.close(probe)
            self._stop_recorded()

    def _stop_recorded(self) -> None:
        """SIGTERM the recorded service, SIGKILL after STOP_DEADLINE_S; reap it when it is this process's child."""
        pid_file = self.directory / "service.pid"
        try:
            pid, ticks = (int(word) for word in pid_file.read_text().split())
        except (OSError, ValueError):
            return  # not started by these tests (or already stopped)
        pid_file.unlink()
        for sig, deadline_s in ((signal.SIGTERM, STOP_DEADLINE_S), (signal.SIGKILL, 5.0)):
            if not _runs(pid, ticks):
                return
            os.kill(pid, sig)
            if self.proc is not None and self.proc.pid == pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(deadline_s)
            end = time.monotonic() + deadline_s
            while _runs(pid, ticks) and time.monotonic() < end:
                time.sleep(0.1)


def _runs(pid: int, ticks: int) -> bool:
    """True while the process started at `ticks` runs (a zombie left for another session to reap does not)."""
    try:
        process = psutil.Process(pid)
        return process_start_ticks(pid) == ticks and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass
class DockerEngine:
    """A reachable engine: its socket, and the shared service these tests started for it (None: a daemon of
    the host's, never stopped here)."""

    socket: Path
    service: SharedService | None = None

    def client(self) -> httpx.Client:
        """A synchronous client on the socket (for test setup and checks)."""
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://docker", timeout=30)

    def stop(self) -> None:
        """Let go of the shared service; the last session using it stops it (a host daemon is left alone)."""
        if self.service is not None:
            self.service.leave()


def ping(socket: Path, timeout_s: float = 2.0) -> bool:
    """True when an engine answers GET /_ping on `socket`."""
    if not socket.exists():
        return False
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), timeout=timeout_s) as c:
            return c.get("http://docker/_ping").status_code == 200
    except httpx.HTTPError:
        return False


def start_engine() -> DockerEngine | str:
    """A running engine, or the reason none can run here."""
    host = os.environ.get("DOCKER_HOST", "")
    candidates = [Path(host.removeprefix("unix://"))] if host.startswith("unix://") else []
    for socket in [*candidates, DEFAULT_SOCKET]:
        if ping(socket):
            return DockerEngine(socket)
    dockerd = shutil.which("dockerd")
    argv = [
        dockerd or "dockerd",
        "--data-root", str(DOCKERD_DIR / "data"),
        "--exec-root", str(DOCKERD_DIR / "exec"),
        "--pidfile", str(DOCKERD_DIR / "dockerd.pid"),
        "-H", f"unix://{OWN_SOCKET}",
    ]  # fmt: skip
    cannot = (
        f"dockerd is not installed ({INSTALL_HINT}; `make test` does this as root)" if dockerd is None
        else "dockerd needs root here, and the tests do not run as root" if os.geteuid() != 0
        else None
    )  # fmt: skip
    if cannot is None:
        for sub in ("data", "exec"):
            (DOCKERD_DIR / sub).mkdir(parents=True, exist_ok=True)
    return _shared_service(argv, OWN_SOCKET, DOCKERD_DIR / "dockerd.log", cannot)


def _shared_service(argv: list[str], socket: Path, log_path: Path, cannot: str | None) -> DockerEngine | str:
    """Join the service answering on `socket`, or start it (`cannot`: why it cannot be started here; in its own
    session, outside the host scope) and join it once it answers; else why not."""
    service = SharedService(log_path.parent)
    with service.exclusive():
        if not ping(socket):
            if cannot:
                return cannot
            env = {key: value for key, value in os.environ.items() if key != HOST_SCOPE_VAR}
            with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
                proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True, env=env)  # fmt: skip
            failed = _wait_answering(proc, socket, log_path)
            if failed:
                return failed
            service.started(proc)
        service.join()
    return DockerEngine(socket, service)


def _wait_answering(proc: subprocess.Popen, socket: Path, log_path: Path) -> str | None:
    """None once the service answers on `socket`; why not when it exits or START_DEADLINE_S passes (killed)."""
    name = Path(str(proc.args[0])).name
    end = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-600:]
            return f"{name} exited with {proc.returncode}: {tail}"
        if ping(socket):
            return None
        time.sleep(0.2)
    proc.kill()
    proc.wait(5)
    return f"{name} did not answer on {socket} within {START_DEADLINE_S:.0f} s"


PODMAN_DIR = Path("/tmp/gb10-test-podman")
PODMAN_SOCKET = PODMAN_DIR / "podman.sock"
# Podman's runc here refuses the default rlimits unless they are given explicitly.
PODMAN_ULIMITS = {"nofile": "1024:1024", "nproc": "4096:4096"}


def start_podman() -> DockerEngine | str:
    """Podman's Docker-compatible API service on its own socket, or the reason it cannot run."""
    podman = shutil.which("podman")
    argv = [podman or "podman", "system", "service", "--time=0", f"unix://{PODMAN_SOCKET}"]
    cannot = (
        f"podman is not installed ({INSTALL_HINT} podman; `make test` does this as root)" if podman is None
        else "the Podman test runs rootful podman, and the tests do not run as root" if os.geteuid() != 0
        else None
    )  # fmt: skip
    return _shared_service(argv, PODMAN_SOCKET, PODMAN_DIR / "service.log", cannot)


def _is_static(binary: Path) -> bool:
    head = binary.read_bytes()[:8192]
    return head.startswith(b"\x7fELF") and b"ld-linux" not in head and b"ld-musl" not in head


def _rootfs_tar(models_json: bytes) -> bytes:
    """A busybox rootfs: the binary, applet links, /tmp, and static files for httpd under /www."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "www", "www/v1", "etc", "proc", "sys", "dev"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        add_file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        add_file("www/health", b"ok\n")
        add_file("www/v1/models", models_json)
        add_file("etc/passwd", b"root:x:0:0:root:/tmp:/bin/sh\n")
    return buf.getvalue()


def build_image(engine: DockerEngine) -> str | None:
    """Import the busybox image (tagged by content, so a rebuild is skipped); None when impossible."""
    if not BUSYBOX.exists() or not _is_static(BUSYBOX):
        return None
    models = json.dumps({"object": "list", "data": [{"id": "busybox-standin", "object": "model"}]}).encode()
    tar = _rootfs_tar(models)
    tag = hashlib.sha256(tar).hexdigest()[:12]
    ref = f"{IMAGE_REPO}:{tag}"
    with engine.client() as c:
        if c.get(f"/images/{ref}/json").status_code == 200:
            return ref
        # the tag rides in `repo`: Podman's compatible API ignores a separate `tag`
        resp = c.post("/images/create", params={"fromSrc": "-", "repo": ref}, content=tar)
        resp.raise_for_status()
        if c.get(f"/images/{ref}/json").status_code != 200:
            raise AssertionError(f"imported the busybox rootfs but {ref} does not resolve: {resp.text[:300]}")
    return ref


def engine_mounts(root: Path) -> list[str]:
    """Read-only binds that let the host's Python, venv and project run inside a busybox container."""
    paths = [Path("/usr"), Path("/lib"), Path("/lib64"), Path(sys.base_prefix), root, Path(sys.prefix)]
    added: list[Path] = []
    for path in paths:
        if path.exists() and not any(path == a or a in path.parents for a in added):
            added.append(path)
    return [f"{path}:{path}:ro" for path in added]


def remove_labelled(engine: DockerEngine, label: str) -> None:
    """Force-remove every container carrying `label` (test cleanup)."""
    with engine.client() as c:
        found = c.get("/containers/json", params={"all": "1", "filters": json.dumps({"label": [label]})}).json()
        for item in found:
            c.delete(f"/containers/{item['Id']}", params={"force": "1"})
