"""A serve container's configuration without a daemon (runners/serve/container_config.py): labels and
lifecycle settings, env and binds, the host and bridge networks, GPU requests for Docker and Podman, sizes,
and mount sources that are missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.units import GIB
from runners.host.docker_api import DockerError
from runners.host.owner import Owner
from runners.plan.serve_spec import DockerServe
from runners.plan.steps import PROFILE_DIR_NAME
from runners.serve.container_config import ContainerConfig, gpu_request
from runners.serve.plugin_inject import INJECTED_MODULE, PLUGIN_SOURCE, write_injected_plugin

COMMAND = ["vllm", "serve", "--host", "{host}", "--port", "{port}", "--env-dir", "{env_dir}"]
HOST_PORT = 40123  # the port the runtime picked: only ever written into the config here


def container_config(tmp_path: Path, env: dict[str, str] | None = None, **fields: object) -> ContainerConfig:
    """The container of arm split8 of run r1, its serve dir under tmp_path."""
    spec = DockerServe.model_validate({"kind": "docker", "image": "vllm:local", "command": COMMAND, **fields})
    serve_dir = (tmp_path / "serve").resolve()
    return ContainerConfig.for_session(
        spec,
        {"CUTE_WO_SPLIT": "8"} if env is None else env,
        run_id="r1",
        arm="split8",
        mode="primary",
        owner=Owner("h", 1, 2),
        host_port=HOST_PORT,
        env_dir=serve_dir / "env",
        profile_dir=serve_dir / PROFILE_DIR_NAME,
        plugin_dir=serve_dir / "plugin",
    )


def no_log(text: str) -> None:
    """A serve.log that is not there."""


def test_config_labels_and_lifecycle(tmp_path: Path) -> None:
    """The container carries the run's labels, OomScoreAdj 1000, no restart, no auto-remove."""
    made = container_config(tmp_path)
    config = made.create_body(made.binds(Path, no_log), podman=False)
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
    assert made.name.startswith("gb10-r1-split8-primary-")


def test_config_env_and_binds(tmp_path: Path) -> None:
    """Env holds the arm env and GB10_ENV_DIR; the ENV dir is the first bind, read-only; mounts follow."""
    models, cache = tmp_path / "models", tmp_path / "cache"
    models.mkdir()
    cache.mkdir()
    made = container_config(
        tmp_path,
        {"CUTE_WO_SPLIT": "8", "GB10_ENV_DIR": "/elsewhere"},
        mounts=[f"{models}:/models:ro", f"{cache}:/root/.cache"],
        env_mount="/run/gb10",
    )
    config = made.create_body(made.binds(Path, no_log), podman=False)
    assert config["Env"] == ["CUTE_WO_SPLIT=8", "GB10_ENV_DIR=/run/gb10", "PYTHONPATH=/gb10/plugin"]
    serve = (tmp_path / "serve").resolve()
    assert config["HostConfig"]["Binds"] == [
        f"{serve}/env:/run/gb10:rw",  # the vLLM plugin writes its reports beside the sentinel ...
        f"{serve}/env/ENV:/run/gb10/ENV:ro",  # ... which the container cannot change
        f"{serve}/@profile:/gb10/profile:rw",
        f"{serve}/plugin:/gb10/plugin:ro",  # the injected vLLM plugin, which the container cannot change
        f"{models}:/models:ro",
        f"{cache}:/root/.cache:rw",
    ]
    assert config["Cmd"][-1] == "/run/gb10"


def test_config_host_network_fills_the_picked_port(tmp_path: Path) -> None:
    """network = host: the server binds {host}:{port} with the runner's free port; nothing is published."""
    made = container_config(tmp_path)
    config = made.create_body(made.binds(Path, no_log), podman=False)
    assert config["HostConfig"]["NetworkMode"] == "host"
    assert config["Cmd"] == [
        "vllm",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(made.host_port),
        "--env-dir",
        "/gb10/env",
    ]
    assert "PortBindings" not in config["HostConfig"] and "ExposedPorts" not in config
    assert made.base_url == f"http://127.0.0.1:{made.host_port}"


def test_config_bridge_network_publishes_on_loopback(tmp_path: Path) -> None:
    """network = bridge: {port} is container_port, {host} 0.0.0.0, published on 127.0.0.1 only."""
    made = container_config(tmp_path, network="bridge", container_port=9000, entrypoint=["/bin/sh", "-c", "{port}"])
    config = made.create_body(made.binds(Path, no_log), podman=False)
    host = config["HostConfig"]
    assert host["NetworkMode"] == "bridge"
    assert config["Cmd"][2:6] == ["--host", "0.0.0.0", "--port", "9000"]
    assert config["Entrypoint"] == ["/bin/sh", "-c", "9000"]
    assert config["ExposedPorts"] == {"9000/tcp": {}}
    assert host["PortBindings"] == {"9000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(made.host_port)}]}
    assert made.base_url == f"http://127.0.0.1:{made.host_port}"


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
    made = container_config(tmp_path, gpus=gpus)
    assert made.create_body(made.binds(Path, no_log), podman=False)["HostConfig"].get("DeviceRequests") == expected


def test_config_sizes_are_bytes_and_swap_equals_memory(tmp_path: Path) -> None:
    """shm_size and memory_limit become bytes; MemorySwap == Memory (no swap on top)."""
    made = container_config(tmp_path, ipc="private", shm_size="16g", memory_limit="1.5GiB")
    host = made.create_body(made.binds(Path, no_log), podman=False)["HostConfig"]
    assert host["ShmSize"] == 16 * GIB
    assert host["Memory"] == host["MemorySwap"] == int(1.5 * GIB)
    assert host["IpcMode"] == "private"
    plain = container_config(tmp_path).create_body([], podman=False)["HostConfig"]
    assert "ShmSize" not in plain and "Memory" not in plain and "MemorySwap" not in plain


def test_a_missing_mount_source_is_an_error_naming_serve_mounts(tmp_path: Path) -> None:
    """A mount whose host path does not exist is refused (Docker would mount an empty dir)."""
    missing = tmp_path / "no-such-models"
    made = container_config(tmp_path, mounts=[f"{missing}:/models:ro"])
    with pytest.raises(DockerError) as info:
        made.binds(Path, no_log)
    assert str(info.value).startswith("serve.mounts: ")
    assert str(missing) in str(info.value) and "does not exist" in str(info.value)


def test_a_missing_read_write_mount_source_is_created_and_said(tmp_path: Path) -> None:
    """A read-write mount whose host path does not exist is created, as `docker -v` does, and logged."""
    cache = tmp_path / "no-such-cache"
    made = container_config(tmp_path, mounts=[f"{cache}:/root/.cache"])
    lines: list[str] = []
    assert made.binds(Path, lines.append)[-1] == f"{cache}:/root/.cache:rw"
    assert cache.is_dir() and lines == [f"created {cache} for the mount at /root/.cache"]


def test_gpu_requests_are_cdi_names_on_podman_and_capabilities_on_docker(tmp_path: Path) -> None:
    """Podman honours only CDI device requests; Docker gets the NVIDIA capability request."""
    assert gpu_request("all", podman=True) == {"Driver": "cdi", "DeviceIDs": ["nvidia.com/gpu=all"]}
    assert gpu_request(2, podman=True)["DeviceIDs"] == ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]
    assert gpu_request("all", podman=False) == {"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}
    podman = container_config(tmp_path, gpus="all").create_body([], podman=True)
    assert podman["HostConfig"]["DeviceRequests"] == [{"Driver": "cdi", "DeviceIDs": ["nvidia.com/gpu=all"]}]


def test_the_injected_plugin_joins_the_pythonpath_of_the_arm_or_the_image(tmp_path: Path) -> None:
    """PYTHONPATH: the plugin mount appended to the arm's value, else the image's, else alone; once only."""
    made = container_config(tmp_path, plugin_mount="/opt/gb10")
    image_env = ["PATH=/usr/bin", "PYTHONPATH=/workspace/lib:/opt/extra"]
    env = made.create_body([], podman=False, image_env=image_env)["Env"]
    assert env[-1] == "PYTHONPATH=/workspace/lib:/opt/extra:/opt/gb10"  # the image's path kept, ours last
    arm = container_config(tmp_path, {"PYTHONPATH": "/mine:/opt/gb10"}, plugin_mount="/opt/gb10")
    assert arm.create_body([], podman=False, image_env=image_env)["Env"][0] == "PYTHONPATH=/mine:/opt/gb10"


def test_a_plan_can_turn_the_injection_off(tmp_path: Path) -> None:
    """inject_plugin = false: no plugin bind, PYTHONPATH left to the arm and the image."""
    made = container_config(tmp_path, inject_plugin=False)
    config = made.create_body(made.binds(Path, no_log), podman=False, image_env=["PYTHONPATH=/img"])
    assert made.plugin_dir is None
    assert not [b for b in config["HostConfig"]["Binds"] if "/gb10/plugin" in b]
    assert not [e for e in config["Env"] if e.startswith("PYTHONPATH=")]


def test_the_injected_copy_is_the_plugin_under_its_own_names(tmp_path: Path) -> None:
    """The module is the plugin's source; the dist-info names its own distribution and the same entry point."""
    written = write_injected_plugin(tmp_path / "plugin")
    assert (written / INJECTED_MODULE / "__init__.py").read_text() == PLUGIN_SOURCE.read_text()
    [dist] = written.glob("*.dist-info")
    assert dist.name == f"{INJECTED_MODULE}-0.1.0.dist-info"
    assert "Name: gb10_vllm_plugin_injected\n" in (dist / "METADATA").read_text()
    entry = f"[vllm.general_plugins]\ngb10_env = {INJECTED_MODULE}:register\n"
    assert (dist / "entry_points.txt").read_text() == entry


def test_a_mount_point_for_the_plugin_must_be_absolute() -> None:
    """plugin_mount is a container path: a relative one is refused naming the field."""
    with pytest.raises(ValueError, match="plugin_mount"):
        DockerServe.model_validate({"kind": "docker", "image": "i", "command": COMMAND, "plugin_mount": "gb10"})
