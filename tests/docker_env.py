"""A real Docker engine for the tests: use the one running, or start dockerd with its data under /tmp.

Images are made locally with the Engine API's import (a busybox-static rootfs packed here), never
pulled. Where no engine can run (no dockerd binary, not root, no static busybox), the caller gets
a reason to skip with.
"""

from __future__ import annotations

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
from dataclasses import dataclass
from pathlib import Path

import httpx

from runners.host.docker_api import DEFAULT_SOCKET

DOCKERD_DIR = Path("/tmp/gb10-test-dockerd")
OWN_SOCKET = DOCKERD_DIR / "docker.sock"
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 20.0
BUSYBOX = Path("/bin/busybox")
IMAGE_REPO = "gb10-test/busybox"
APPLETS = ("sh", "httpd", "sleep", "cat", "echo", "head", "tr", "kill", "ls", "true", "env", "dd")
INSTALL_HINT = "apt-get install -y docker.io busybox-static"


@dataclass
class DockerEngine:
    """A reachable engine: its socket, and the dockerd process if these tests started it."""

    socket: Path
    proc: subprocess.Popen | None = None

    def client(self) -> httpx.Client:
        """A synchronous client on the socket (for test setup and checks)."""
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://docker", timeout=30)

    def stop(self) -> None:
        """Stop the dockerd these tests started (leaves a system daemon alone)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


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
    for socket in [*candidates, DEFAULT_SOCKET, OWN_SOCKET]:
        if ping(socket):
            return DockerEngine(socket)
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        return f"dockerd is not installed ({INSTALL_HINT}; `make test` does this as root)"
    if os.geteuid() != 0:
        return "dockerd needs root here, and the tests do not run as root"
    for sub in ("data", "exec"):
        (DOCKERD_DIR / sub).mkdir(parents=True, exist_ok=True)
    argv = [
        dockerd,
        "--data-root", str(DOCKERD_DIR / "data"),
        "--exec-root", str(DOCKERD_DIR / "exec"),
        "--pidfile", str(DOCKERD_DIR / "dockerd.pid"),
        "-H", f"unix://{OWN_SOCKET}",
    ]  # fmt: skip
    return _spawn_service(argv, OWN_SOCKET, DOCKERD_DIR / "dockerd.log")


def _spawn_service(argv: list[str], socket: Path, log_path: Path) -> DockerEngine | str:
    """Start an engine service in its own session; its engine once it answers on `socket`, else why not."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    name = Path(argv[0]).name
    end = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-600:]
            return f"{name} exited with {proc.returncode}: {tail}"
        if ping(socket):
            return DockerEngine(socket, proc)
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
    if ping(PODMAN_SOCKET):
        return DockerEngine(PODMAN_SOCKET)
    podman = shutil.which("podman")
    if podman is None:
        return f"podman is not installed ({INSTALL_HINT} podman; `make test` does this as root)"
    if os.geteuid() != 0:
        return "the Podman test runs rootful podman, and the tests do not run as root"
    argv = [podman, "system", "service", "--time=0", f"unix://{PODMAN_SOCKET}"]
    return _spawn_service(argv, PODMAN_SOCKET, PODMAN_DIR / "service.log")


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
