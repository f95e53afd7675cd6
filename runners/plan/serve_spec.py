"""`[serve]`: the serve target a plan runs against: a local process, a container, or a URL we do not own."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from runners.plan.fields import MOUNT, EnvValue, check_env, check_gpus, check_size, ulimit_pair


class ServeCommon(BaseModel):
    """What every serve target kind shares: env, per-mode env, and the readiness/stop deadlines."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: dict[str, EnvValue] = Field(default_factory=dict, description="env for every arm (an arm's env wins)")
    supplementary_env: dict[str, EnvValue] = Field(
        default_factory=dict, description="added in supplementary sessions (profiler, region timing)"
    )
    ready_timeout_s: float = Field(120.0, gt=0, le=7200)
    stop_timeout_s: float = Field(10.0, gt=0, le=600)
    health_interval_s: float = Field(5.0, gt=0, le=600, description="probe /health this often during a step")

    _env_ok = field_validator("env", "supplementary_env")(check_env)


class ProcessServe(ServeCommon):
    """A local process: the embedded engine unless `command` is given."""

    kind: Literal["process"] = "process"
    engine_config: str | None = Field(
        None, description="embedded engine config, relative to the plan file; used when command is empty"
    )
    command: list[str] = Field(
        default_factory=list,
        description="argv with placeholders {python} {host} {port} {env_dir} {profile_dir} {plan_dir}",
    )
    host: Literal["127.0.0.1", "localhost", "::1"] = "127.0.0.1"

    @model_validator(mode="after")
    def _one_target(self) -> ProcessServe:
        if not self.command and not self.engine_config:
            raise ValueError("give either engine_config (the embedded engine) or command")
        if self.command and self.engine_config:
            raise ValueError("give engine_config or command, not both")
        if self.command and "{port}" not in " ".join(self.command):
            raise ValueError("command must contain {port} so the runner can pick a free port")
        return self


class DockerServe(ServeCommon):
    """A container on the local Docker (or Podman) engine, created and owned by the runner."""

    kind: Literal["docker"]
    image: str = Field(min_length=1, description="a local image; gb10-console never pulls")
    command: list[str] = Field(
        default_factory=list, description="the container's command, placeholders {host} {port} {env_dir} {profile_dir}"
    )
    entrypoint: list[str] | None = Field(None, description="replaces the image's entrypoint")
    network: Literal["host", "bridge"] = Field(
        "host", description="host: the server binds {host}:{port}; bridge: container_port is published on 127.0.0.1"
    )
    host: Literal["127.0.0.1", "localhost", "::1"] = "127.0.0.1"
    container_port: int = Field(8000, ge=1, le=65535, description="bridge network: the port the server listens on")
    gpus: Annotated[str | int, BeforeValidator(check_gpus)] = Field(
        "all", description='"all", "none" or a GPU count (--gpus)'
    )
    ipc: Literal["host", "private", "shareable"] = Field("host", description="IPC namespace (--ipc)")
    shm_size: str | int | None = Field(None, description="/dev/shm size (--shm-size), e.g. 16g or bytes")
    memory_limit: str | int | None = Field(None, description="cgroup memory limit (--memory), e.g. 100g or bytes")
    mounts: list[str] = Field(
        default_factory=list, description="HOST:CONTAINER[:ro|rw]; HOST relative to the plan file or ~"
    )
    ulimits: dict[str, int | str] = Field(
        default_factory=dict, description='--ulimit: {nofile = "1024:1024", memlock = -1}; -1 is unlimited'
    )
    env_mount: str = Field("/gb10/env", description="where the arm's ENV sentinel directory appears in the container")
    profile_mount: str = Field(
        "/gb10/profile", description="where the runner-owned trace directory ({profile_dir}) appears in the container"
    )
    inject_plugin: bool = Field(
        True,
        description="mount gb10-console's vLLM plugin read-only at plugin_mount and append it to PYTHONPATH, so an "
        "image without the plugin still proves its arm in EngineCore (an image's installed copy is kept: the "
        "injected one steps aside); false: the image's own copy or none",
    )
    plugin_mount: str = Field("/gb10/plugin", description="where the injected vLLM plugin appears in the container")
    socket: str | None = Field(None, description="engine socket; default DOCKER_HOST, then the usual paths")
    ready_timeout_s: float = Field(900.0, gt=0, le=7200)
    stop_timeout_s: float = Field(30.0, gt=0, le=600)
    keep_container: bool = Field(
        False, description="keep each stopped container; by default it is removed once its log and inspect are kept"
    )

    _sizes_ok = field_validator("shm_size", "memory_limit")(check_size)

    @field_validator("mounts")
    @classmethod
    def _mounts_ok(cls, value: list[str]) -> list[str]:
        for mount in value:
            if not MOUNT.match(mount):
                raise ValueError(f"{mount!r} is not HOST:CONTAINER[:ro|rw] with an absolute CONTAINER path")
        return value

    @field_validator("ulimits")
    @classmethod
    def _ulimits_ok(cls, value: dict[str, int | str]) -> dict[str, int | str]:
        for name, limit in value.items():
            ulimit_pair(name, limit)
        return value

    @field_validator("env_mount", "profile_mount", "plugin_mount")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path inside the container")
        return value

    def binds(self, resolve: Callable[[str], Path]) -> list[tuple[Path, str, str]]:
        """Each mount as (host path resolved against the plan, container path, "ro" or "rw")."""
        out = []
        for mount in self.mounts:
            match = MOUNT.match(mount)
            if match is None:  # unreachable: validated above
                raise ValueError(mount)
            out.append((resolve(match.group(1)), match.group(2), match.group(3) or "rw"))
        return out

    @model_validator(mode="after")
    def _port_known(self) -> DockerServe:
        argv = " ".join([*(self.entrypoint or []), *self.command])
        if self.network == "host" and not ("{port}" in argv and "{host}" in argv):
            raise ValueError(
                'with network = "host" the command must contain {host} and {port}: the runner picks a free port, '
                "and a server left to its default address (often 0.0.0.0) is reachable from the whole network"
            )
        if self.shm_size and self.ipc == "host":
            raise ValueError('shm_size needs ipc = "private" or "shareable"; with ipc = "host" /dev/shm is the host\'s')
        return self


class ExternalServe(ServeCommon):
    """A server we do not own: probed and measured, never started or stopped."""

    kind: Literal["external"]
    url: str = Field(description="base URL, e.g. http://127.0.0.1:8000")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+$", value.rstrip("/")):
            raise ValueError(f"{value!r} is not an http(s) base URL like http://127.0.0.1:8000")
        return value.rstrip("/")


ServeSpec = Annotated[ProcessServe | DockerServe | ExternalServe, Field(discriminator="kind")]
