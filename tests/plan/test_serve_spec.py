"""The [serve] table of plans (runners/plan/serve_spec.py): the docker and external kinds load, bad fields
are named with their file and line, a table without a kind is a process, and the shipped Docker plans.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config_file import ConfigFileError
from engine.units import GIB
from runners.plan.fields import parse_size
from runners.plan.load import load_plan
from runners.plan.model import Plan
from runners.plan.serve_spec import DockerServe, ExternalServe, ProcessServe
from tests.support.plans import write_plan
from tests.support.project import ROOT

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
    """A shipped plan's model: the whole load passes anywhere (its datasets are named, fetched from the Hub)."""
    return load_plan(ROOT / "configs" / name).plan


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
