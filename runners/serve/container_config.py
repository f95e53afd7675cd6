"""A serve container's configuration: from the plan's docker [serve] table, the arm's env and the session's
directories to the Engine API's create body (its binds and its GPU request included).

Nothing here talks to a daemon. The one side effect is on the host's filesystem: a missing read-write
mount source is created, as `docker -v` does (a missing read-only one is an error).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.env_sentinel import ENV_DIR_VAR, SENTINEL_NAME
from runners.host.docker_api import DockerError
from runners.host.owner import Owner, run_labels
from runners.plan.fields import parse_size, ulimit_pair
from runners.plan.serve_spec import DockerServe
from runners.serve.plugin_inject import PYTHONPATH, python_path
from runners.serve.process import fill_placeholders

OOM_SCORE_ADJ = 1000  # a global OOM takes the server, not udev or snapd


@dataclass(frozen=True)
class ContainerConfig:
    """One session's container: its name, labels, the arm's env and the command with every placeholder filled,
    the host port the server is reached on, and the host directories bound into it."""

    spec: DockerServe
    name: str
    labels: dict[str, str]
    env: dict[str, str]  # the arm's env, placeholders filled
    command: list[str]
    entrypoint: list[str] | None
    host_port: int  # where the runner reaches the server: the port it listens on (host network) or publishes
    base_url: str
    env_dir: Path  # the ENV sentinel's directory, writable for the vLLM plugin's reports
    profile_dir: Path  # the runner-owned trace directory
    plugin_dir: Path | None  # the injected vLLM plugin (runners/serve/plugin_inject.py); None: not injected

    @classmethod
    def for_session(
        cls,
        spec: DockerServe,
        env: dict[str, str],
        *,
        run_id: str,
        arm: str,
        mode: str,
        owner: Owner,
        host_port: int,
        env_dir: Path,
        profile_dir: Path,
        plugin_dir: Path,
    ) -> ContainerConfig:
        """The container of `arm`'s `mode` session in run `run_id`, reached on `host_port` of this host.

        With network = host the server binds `spec.host` on `host_port` itself; with bridge it binds
        0.0.0.0:`container_port` inside, published on 127.0.0.1:`host_port` only. `plugin_dir`: where the
        injected vLLM plugin is written when the spec injects it.
        """
        if spec.network == "host":
            listen_host, listen_port = spec.host, host_port
            url_host = f"[{spec.host}]" if ":" in spec.host else spec.host
        else:
            listen_host, listen_port, url_host = "0.0.0.0", spec.container_port, "127.0.0.1"
        fill = {"{host}": listen_host, "{port}": str(listen_port), "{env_dir}": spec.env_mount,
                "{profile_dir}": spec.profile_mount}  # fmt: skip
        entrypoint = spec.entrypoint
        return cls(
            spec=spec,
            name=f"gb10-{run_id}-{arm}-{mode}-{secrets.token_hex(3)}",
            labels=run_labels(run_id, arm, mode, owner),
            env={key: fill_placeholders(value, fill) for key, value in env.items()},
            command=[fill_placeholders(part, fill) for part in spec.command],
            entrypoint=[fill_placeholders(part, fill) for part in entrypoint] if entrypoint is not None else None,
            host_port=host_port,
            base_url=f"http://{url_host}:{host_port}",
            env_dir=env_dir,
            profile_dir=profile_dir,
            plugin_dir=plugin_dir if spec.inject_plugin else None,
        )

    def binds(self, resolve: Callable[[str], Path], log: Callable[[str], None]) -> list[str]:
        """Bind specs: the ENV dir (writable for the vLLM plugin's reports, its ENV file read-only), the trace
        dir, the injected vLLM plugin (read-only), then the plan's mounts (host paths resolved by `resolve`).

        A missing read-only source (a model) is an error, since Docker would mount an empty
        directory in its place; a missing read-write source (a cache) is created, as `docker -v` does,
        and `log` is told.
        """
        spec = self.spec
        binds = [
            f"{self.env_dir}:{spec.env_mount}:rw",
            f"{self.env_dir / SENTINEL_NAME}:{spec.env_mount}/{SENTINEL_NAME}:ro",
            f"{self.profile_dir}:{spec.profile_mount}:rw",
        ]
        if self.plugin_dir is not None:
            binds.append(f"{self.plugin_dir}:{spec.plugin_mount}:ro")
        for source, target, option in spec.binds(resolve):
            if not source.exists():
                if option == "ro":
                    raise DockerError(
                        f"serve.mounts: {source} (read-only, for {target}) does not exist on this host; "
                        "fix the path in the plan or put the files there"
                    )
                try:
                    source.mkdir(parents=True)
                except OSError as exc:
                    raise DockerError(f"serve.mounts: cannot create {source} for {target}: {exc}") from None
                log(f"created {source} for the mount at {target}")
            binds.append(f"{source}:{target}:{option}")
        return binds

    def create_body(self, binds: list[str], podman: bool, image_env: list[str] | None = None) -> dict:
        """The body of the Engine API's container create: image, env (+ GB10_ENV_DIR, and PYTHONPATH with the
        injected plugin appended to the arm's or the image's `image_env`), labels, command, network (a bridge
        publishes on loopback only), binds, the GPU request, ulimits and sizes in bytes."""
        spec = self.spec
        env = {**self.env, ENV_DIR_VAR: spec.env_mount}
        if self.plugin_dir is not None:
            env[PYTHONPATH] = python_path(image_env or [], self.env, spec.plugin_mount)
        host_config: dict = {
            "NetworkMode": spec.network,
            "Binds": binds,
            "IpcMode": spec.ipc,
            "OomScoreAdj": OOM_SCORE_ADJ,
            "RestartPolicy": {"Name": "no"},
            "AutoRemove": False,
        }
        config: dict = {
            "Image": spec.image,
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Labels": self.labels,
            "Tty": False,
            "AttachStdin": False,
            "OpenStdin": False,
        }
        if self.command:
            config["Cmd"] = self.command
        if self.entrypoint is not None:
            config["Entrypoint"] = self.entrypoint
        if spec.network == "bridge":
            port_key = f"{spec.container_port}/tcp"
            config["ExposedPorts"] = {port_key: {}}
            host_config["PortBindings"] = {port_key: [{"HostIp": "127.0.0.1", "HostPort": str(self.host_port)}]}
        if spec.gpus != "none":
            host_config["DeviceRequests"] = [gpu_request(spec.gpus, podman)]
        if spec.ulimits:
            host_config["Ulimits"] = [
                {"Name": name, "Soft": soft, "Hard": hard}
                for name, (soft, hard) in ((n, ulimit_pair(n, v)) for n, v in spec.ulimits.items())
            ]
        if spec.shm_size:
            host_config["ShmSize"] = parse_size(spec.shm_size)
        if spec.memory_limit:
            limit = parse_size(spec.memory_limit)
            host_config["Memory"] = limit
            host_config["MemorySwap"] = limit  # no swap on top: the limit is the limit
        config["HostConfig"] = host_config
        return config


def gpu_request(gpus: str | int, podman: bool) -> dict:
    """`--gpus` as a device request: Docker's NVIDIA capability request, or CDI names for Podman.

    Podman's compatible API honours only CDI requests and silently drops the others.
    """
    if podman:
        ids = ["nvidia.com/gpu=all"] if gpus == "all" else [f"nvidia.com/gpu={i}" for i in range(int(gpus))]
        return {"Driver": "cdi", "DeviceIDs": ids}
    return {"Driver": "", "Count": -1 if gpus == "all" else int(gpus), "Capabilities": [["gpu"]]}
