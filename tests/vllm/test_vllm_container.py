"""A real vLLM in a container, soaked as a `docker` target: the vLLM of `make vllm` in the tests' busybox image, with
this host's libraries, the venv's base Python and the venv bound read-only (no image built for it, no pull).

The venv's installed gb10-vllm-plugin is hidden (empty directories mounted over its package and dist-info): an
image without the plugin, whose arms are proven only by the copy the runner injects. One run, four vLLM starts
(two arms, primary then supplementary), carries every check: each arm's env proven in the container's
EngineCore, the client against vLLM's histograms, a profiled supplementary step whose trace comes back through
the bind mount, a frozen container (`docker pause`) caught by the stall detector, and a guard kill (a memory hog
the test starts, against floors set below this host's MemAvailable) written to the known-OOM record. The
image's own copy, where it has one, is checked without a server: vLLM's plugin loader in a container.

Run with `-s` to see the client-vs-server table docs/benchmarks.md quotes.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.units import to_gib
from runners.evidence.oom_record import RECORD_NAME, STATE_DIR_VAR
from runners.host.meminfo import read_meminfo
from runners.host.owner import this_runner
from runners.plan.serve_spec import DockerServe
from runners.run.files import read_json, read_jsonl
from runners.serve.docker import DockerRuntime
from runners.testbed.vllm_target import VLLM_VENV, container_mounts, docker_serve_toml, unavailable
from tests.docker_env import DockerEngine, remove_labelled
from tests.support.plans import phases_toml
from tests.support.project import ROOT
from tests.support.vllm_runs import PROFILED_STEP, client_vs_server_row, compared, events_of, phase_records
from tests.support.waits import wait_until

STALL_S = 3.0
RUN_DEADLINE_S = 900.0
# serial: client vs vLLM histograms, a stall and a guard in time; the first test also waits for the soak (4 starts)
pytestmark = [pytest.mark.slow, pytest.mark.serial, pytest.mark.timeout(RUN_DEADLINE_S + 120)]
# Floors below MemAvailable at the start: one vLLM (~2-3 GiB here) stays above WARN; the hog (2 GiB/s) reaches KILL.
WARN_BELOW_GIB, ABORT_BELOW_GIB, KILL_BELOW_GIB = 7.0, 7.5, 8.0
HOG_GIB = 11.0
NEEDS_GIB = HOG_GIB + 4.0


def plan_text(image: str, socket: Path, mounts: list[str], available_gib: float) -> str:
    """Two arms (env differs) of vLLM in containers: ShareGPT, then a step to freeze; a profiled supplementary step."""
    return f"""
name = "vllm-docker"
{docker_serve_toml(image, socket, mounts, profiler=True)}
[watchdog]
warn_gib = {available_gib - WARN_BELOW_GIB:.2f}
abort_gib = {available_gib - ABORT_BELOW_GIB:.2f}
kill_gib = {available_gib - KILL_BELOW_GIB:.2f}
restart_wait_s = 120
unified_memory = "no"

[[arms]]
name = "a"
env = {{ GB10_ARM_TAG = "candidate-a" }}

[[arms]]
name = "b"
env = {{ GB10_ARM_TAG = "candidate-b" }}

[[phases]]
name = "sharegpt"
kind = "sharegpt"
dataset = "builtin"
requests = 16
concurrency = 4
max_tokens = 32
ignore_eos = true
http_timeout_s = 60
deadline_s = 240

[[phases]]
name = "frozen"
kind = "sharegpt"
dataset = "builtin"
requests = 48
concurrency = 2
max_tokens = 128
ignore_eos = true
http_timeout_s = 60
stall_s = {STALL_S}
metrics_interval_s = 0.25
deadline_s = 240
{phases_toml([PROFILED_STEP])}"""


@dataclass(frozen=True)
class ContainerSoak:
    """The run, what the runner printed, when arm b's container was paused, and the host state dir it wrote."""

    run: Path
    output: str
    returncode: int
    paused_at: float | None
    state_dir: Path


def _ok_requests(step: Path) -> int:
    path = step / "requests.jsonl"
    return sum(r["status"] == "ok" for r in read_jsonl(path)) if path.exists() else 0


def _ready(run: Path, arm: str, mode: str) -> dict | None:
    path = run / "events.jsonl"
    if not path.exists():
        return None
    return next((e for e in read_jsonl(path) if e["type"] == "serve_ready" and (e["arm"], e["mode"]) == (arm, mode)),
                None)  # fmt: skip


def _step_started(run: Path, arm: str, phase: str) -> bool:
    path = run / "events.jsonl"
    return path.exists() and any(
        e["type"] == "step_started" and (e["step"]["arm"], e["step"]["phase"]) == (arm, phase) for e in read_jsonl(path)
    )


@pytest.fixture(scope="module")
def container_soak(docker_engine: DockerEngine, busybox_image: str, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[ContainerSoak]:  # fmt: skip
    """The one container soak: arm b's container paused mid-step, a hog started once b's supplementary target is up."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    available = read_meminfo().available
    assert available is not None
    available_gib = to_gib(available)
    if available_gib < NEEDS_GIB:
        pytest.skip(f"the guard-kill step needs {NEEDS_GIB:g} GiB of MemAvailable, this host has {available_gib:.1f}")
    directory = tmp_path_factory.mktemp("vllm-docker")
    (directory / "empty").mkdir()
    state_dir = directory / "state"  # the known-OOM record: never the user's ~/.local/state
    plan = directory / "plan.toml"
    mounts = container_mounts(hide_plugin_with=directory / "empty")
    plan.write_text(plan_text(busybox_image, docker_engine.socket, mounts, available_gib))
    run = directory / "run"
    env = {**os.environ, "DOCKER_HOST": f"unix://{docker_engine.socket}", STATE_DIR_VAR: str(state_dir)}
    runner = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "run", str(plan), "--headless", "--out", str(run)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    hog: subprocess.Popen | None = None
    paused_at: float | None = None
    try:
        # the step lasts ~10 s on an idle machine (48 x 128 tokens, 2 at a time): the pause lands mid-step
        assert wait_until(lambda: _step_started(run, "b", "frozen") or runner.poll() is not None, RUN_DEADLINE_S, 0.1)
        ready = _ready(run, "b", "primary")
        if runner.poll() is None and ready is not None:
            step = run / "arms" / "b" / "primary" / "frozen" / "0"
            assert wait_until(lambda: _ok_requests(step) >= 2 or runner.poll() is not None, 60, 0.1)
            with docker_engine.client() as client:
                assert client.post(f"/containers/{ready['container']}/pause").status_code == 204
            paused_at = time.time()
        # the hog (about 1 GiB/s here, CPU-bound) while b's supplementary vLLM starts (~40 s): the kill lands in
        # the start or the step, never before the runner's memory check at the start
        run_label = f"gb10.run-id={read_json(run / 'run.json')['run_id']}"
        assert wait_until(lambda: _running(docker_engine, run_label, "b", "supplementary") or runner.poll() is not None,
                          RUN_DEADLINE_S, 0.5)  # fmt: skip
        if runner.poll() is None:
            hog = subprocess.Popen(
                [sys.executable, "-m", "runners.testbed.memhog", "--rate-gib-s", "2", "--max-gib", str(HOG_GIB),
                 "--hold-s", "3", "--max-s", "30"],
                cwd=ROOT, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        output, _ = runner.communicate(timeout=RUN_DEADLINE_S)
    finally:
        for proc in (runner, hog):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        run_id = read_json(run / "run.json")["run_id"] if (run / "run.json").exists() else None
        left = _containers(docker_engine, f"gb10.run-id={run_id}") if run_id else []
        if run_id:
            remove_labelled(docker_engine, f"gb10.run-id={run_id}")  # a paused one too
    assert left == [], [item["Names"] for item in left]  # every container of the run removed by the runner itself
    yield ContainerSoak(run, output, runner.returncode, paused_at, state_dir)


def _running(engine: DockerEngine, run_label: str, arm: str, mode: str) -> bool:
    """A container of the run (`run_label`) for `arm` in `mode` runs."""
    with engine.client() as client:
        flt = json.dumps({"label": [run_label, f"gb10.arm={arm}", f"gb10.mode={mode}"]})
        return bool(client.get("/containers/json", params={"filters": flt}).json())


def _containers(engine: DockerEngine, label: str) -> list[dict]:
    """Every container (running or not) carrying `label`."""
    with engine.client() as client:
        return client.get("/containers/json", params={"all": "1", "filters": json.dumps({"label": [label]})}).json()


def test_each_arm_is_proven_in_the_containers_engine_core_by_the_injected_plugin(container_soak: ContainerSoak) -> None:
    run = container_soak.run
    verified = events_of(run, "env_verified")  # a, b, a's supplementary (b's may be killed before its proof)
    assert [e["arm"] for e in verified][:3] == ["a", "b", "a"], container_soak.output[-3000:]
    for event in verified:
        assert event["where"].startswith("EngineCore pid ") and "(vLLM 0.32" in event["where"], event
        assert event["reported"]["GB10_ARM_TAG"] == f"candidate-{event['arm']}", event
    for arm in ("a", "b"):
        processes = read_json(run / "arms" / arm / "effective.json")["processes"]
        assert {p["plugin_copy"] for p in processes} == {"injected"}, processes  # the image has no copy of its own
        assert "EngineCore" in {role for p in processes for role in p["roles"]}


def test_the_client_is_checked_against_vllms_histograms_in_the_container(container_soak: ContainerSoak) -> None:
    """Over the same requests; on this 2-core host the container's own cpu cgroup delivers chunks in bursts, which
    the check names client-side distortion (docs/benchmarks.md), so either verdict passes here."""
    rows = []
    for arm in ("a", "b"):
        record = phase_records(container_soak.run, arm)["sharegpt"]
        assert record["stats"]["ok"] == record["stats"]["requests"] == 16, record["stats"]["errors"]
        compared(f"{arm}/sharegpt", record)
        rows.append(client_vs_server_row(f"docker, arm {arm}", record))
    print("\n" + "\n".join(rows), file=sys.stderr)


def test_a_profiled_steps_trace_comes_back_through_the_bind_mount(container_soak: ContainerSoak) -> None:
    captured = phase_records(container_soak.run, "a")["profiled"]["profile"]
    assert captured["status"] == "captured", captured
    step = container_soak.run / "arms" / "a" / "supplementary" / "profiled" / "0"
    assert Path(captured["trace"]).parent == step / "profile" and Path(captured["trace"]).is_file()
    assert any(".async_llm." in f for f in captured["files"]), captured["files"]  # the API server's trace too
    assert captured["kernels"]["source"] == "cpu" and captured["kernels"]["rows"]


def test_a_frozen_container_is_caught_by_the_stall_detector(container_soak: ContainerSoak) -> None:
    assert container_soak.paused_at is not None, container_soak.output[-3000:]
    [stalled] = events_of(container_soak.run, "engine_stalled")
    detection_s = stalled["t"] - container_soak.paused_at
    print(f"\ndocker pause to kill {detection_s:.2f} s (stall_s {STALL_S:g})", file=sys.stderr)
    assert STALL_S <= detection_s <= STALL_S + 3.0, (detection_s, stalled)
    assert stalled["step"]["arm"] == "b" and "killed" in stalled["how"], stalled
    failed = {(e["step"]["arm"], e["step"]["phase"]): e["reason"] for e in events_of(container_soak.run, "step_failed")}
    assert failed[("b", "frozen")].startswith("engine stalled for "), failed


def test_a_guard_kill_of_the_container_is_in_the_known_oom_record(container_soak: ContainerSoak) -> None:
    assert container_soak.returncode == 1, container_soak.output[-3000:]  # two steps failed: frozen, and the kill's
    killed = [e for e in events_of(container_soak.run, "guard_ended_target") if e["kill"]]
    assert killed and killed[0]["target"]["arm"] == "b" and killed[0]["target"]["container"], killed
    assert "memory KILL" in killed[0]["cause"] or "predict" in killed[0]["cause"], killed[0]
    records = read_jsonl(container_soak.state_dir / RECORD_NAME)
    assert [(r["arm"], r["mode"], r["cause"]) for r in records] == [("b", "supplementary", "guard")], records
    assert records[0]["identity"].startswith("docker gb10-test/busybox:"), records[0]["identity"]


@pytest.mark.parametrize(("installed", "inject"), [(True, True), (False, False)])
async def test_vllms_loader_in_a_container_runs_one_copy_of_the_plugin(
    docker_engine: DockerEngine, busybox_image: str, tmp_path: Path, installed: bool, inject: bool
) -> None:
    """An image with the plugin installed keeps its own copy (the injected one steps aside: one report, from the
    installed copy); with injection off, an image without the plugin runs none (no report)."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    (tmp_path / "empty").mkdir()
    mounts = container_mounts(hide_plugin_with=None if installed else tmp_path / "empty")
    load = "from vllm.plugins import load_general_plugins; load_general_plugins(); print('loaded')"
    spec = DockerServe(kind="docker", image=busybox_image, socket=str(docker_engine.socket), network="bridge",
                       gpus="none", ipc="private", mounts=mounts, inject_plugin=inject,
                       command=[str(VLLM_VENV / "bin" / "python"), "-c", load])  # fmt: skip
    rid = f"t{os.urandom(4).hex()}"
    rt = DockerRuntime(spec, {"GB10_ARM_TAG": "x", "HOME": "/tmp"}, run_id=rid, arm="a", mode="primary",
                       serve_dir=tmp_path / "serve", env_dir=tmp_path / "private" / "env", resolve=Path,
                       owner=this_runner())  # fmt: skip
    try:
        await rt.start()
        ended = await rt.wait_exit()
        await rt.stop(5)
    finally:
        with contextlib.suppress(Exception):
            remove_labelled(docker_engine, f"gb10.run-id={rid}")
    assert ended.returncode == 0 and "loaded" in rt.log_path.read_text(), rt.log_path.read_text()[-2000:]
    reports = [read_json(p) for p in (rt.env_dir / "reports").glob("*.json")]
    assert [r["copy"] for r in reports] == (["installed"] if installed else []), reports
