"""Pre-flight on this host: what a vLLM target will take of unified memory, the page cache in the way of its
start-up check (dropped by the runner when the plan asks), and another run's serve target still live."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.cli import main
from engine.units import GIB
from runners.host.live_targets import live_targets
from runners.host.meminfo import MemInfo
from runners.host.page_cache import CacheDrop
from runners.host.scope import HOST_SCOPE_VAR, own_scope, process_scope
from runners.plan.load import load_plan
from runners.plan.sections import WatchdogSpec
from runners.plan.serve_spec import DockerServe, ProcessServe
from runners.plan.vllm_memory import MemoryAsk, vllm_memory_ask
from runners.run.events import EventLog
from runners.run.files import read_jsonl
from runners.soak import host_preflight as preflight
from runners.watchdog.host_fit import memory_need, need_fit
from tests.support.plans import Plan

VLLM = ["{python}", "-m", "vllm.entrypoints.openai.api_server", "--host", "{host}", "--port", "{port}"]


def _process(*extra: str) -> ProcessServe:
    return ProcessServe(command=[*VLLM, *extra])


@pytest.mark.parametrize(
    ("serve", "want"),
    [
        (_process("--gpu-memory-utilization", "0.7"), MemoryAsk(0.7, "serve.command[7]")),
        (_process("--gpu_memory_utilization=0.5", "--gpu-memory-utilization=0.6"), MemoryAsk(0.6, "serve.command[8]")),
        (_process(), MemoryAsk(0.9, "vLLM's default --gpu-memory-utilization (serve.command[0] runs vLLM)")),
        (_process("--gpu-memory-utilization", "1.5"), None),  # vLLM refuses it itself
        (ProcessServe(command=["{python}", "-m", "engine.server", "--port", "{port}"]), None),
        (ProcessServe(engine_config="engine.toml"), None),
        (DockerServe(kind="docker", image="nvllm:dev", command=["--host", "{host}", "--port", "{port}",
                                                                "--gpu-memory-utilization", "0.70"]),
         MemoryAsk(0.7, "serve.command[4]")),  # an image whose entrypoint is vLLM: the option says so
    ],
)  # fmt: skip
def test_the_memory_a_vllm_command_asks_for(serve, want) -> None:
    assert vllm_memory_ask(serve) == want


HOST = MemInfo(total=120 * GIB, available=100 * GIB, free=20 * GIB)
SPEC = WatchdogSpec(warn_gib=16, abort_gib=10, kill_gib=6)


def test_a_target_that_leaves_memavailable_under_warn_is_refused() -> None:
    need = memory_need(SPEC, HOST, MemoryAsk(0.9, "serve.command[8]"), unified=True)
    assert need is not None and need.need_gib == pytest.approx(108)
    [error] = need_fit(need, HOST).errors
    assert error.startswith("the serve target asks for 0.9 x MemTotal 120 GiB = 108 GiB (serve.command[8]); with")
    assert "needs 124 GiB MemAvailable and this host has 100 GiB" in error and "to 0.70 or less" in error


def test_page_cache_in_the_way_of_the_start_up_check_is_a_warning() -> None:
    need = memory_need(SPEC, HOST, MemoryAsk(0.5, "serve.command[8]"), unified=True)
    assert need is not None and need.short_of_free
    fit = need_fit(need, HOST)
    assert fit.errors == [] and fit.warnings[0].startswith("MemFree is 20 GiB, below the 60 GiB the target asks for")
    assert "watchdog.drop_page_cache = true" in fit.warnings[0]


def test_no_need_is_claimed_off_unified_memory_or_without_meminfo() -> None:
    ask = MemoryAsk(0.9, "x")
    assert memory_need(SPEC, HOST, ask, unified=False) is None and memory_need(SPEC, HOST, ask, None) is None
    assert memory_need(SPEC, MemInfo(), ask, unified=True) is None
    assert memory_need(SPEC, HOST, None, unified=True) is None


def _vllm_plan(tmp_path: Path, fraction: str) -> Path:
    serve = {"command": [*VLLM, "--gpu-memory-utilization", fraction]}
    phase = {"name": "p", "kind": "concurrent", "streams": 1}
    plan = Plan("unified", serve, [{"name": "a"}], [phase], sections={"watchdog": {"unified_memory": "yes"}})
    return plan.write(tmp_path)


def test_run_and_validate_refuse_a_target_this_host_cannot_hold(tmp_path: Path, capsys) -> None:
    plan = _vllm_plan(tmp_path, "0.99")  # 0.99 x MemTotal plus a WARN floor never fits in MemAvailable
    assert main(["validate", str(plan)]) == 2
    assert "the serve target asks for 0.99 x MemTotal" in capsys.readouterr().err
    assert main(["run", str(plan), "--headless", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refused on this host before anything started:") and "Traceback" not in err
    assert f"{plan}: the serve target asks for 0.99 x MemTotal" in err and not (tmp_path / "run").exists()


async def test_the_runner_drops_the_cache_before_a_start_only_when_asked_and_needed(tmp_path: Path,
                                                                                  monkeypatch) -> None:  # fmt: skip
    plan = _vllm_plan(tmp_path, "0.5")
    text = plan.read_text().replace('unified_memory = "yes"', 'unified_memory = "yes"\ndrop_page_cache = true')
    plan.write_text(text)
    monkeypatch.setattr(preflight, "read_meminfo", lambda: HOST)
    monkeypatch.setattr(preflight, "drop_page_cache", lambda: CacheDrop(True, 20.0, 70.0, ""))
    events = EventLog(tmp_path / "events.jsonl")
    await preflight.drop_cache_before_start(load_plan(plan), events, "a", "primary")
    monkeypatch.setattr(preflight, "read_meminfo", lambda: MemInfo(total=120 * GIB, available=100 * GIB,
                                                                     free=90 * GIB))  # fmt: skip
    await preflight.drop_cache_before_start(load_plan(plan), events, "a", "primary")  # MemFree enough: nothing
    events.close()
    [dropped] = [e for e in read_jsonl(tmp_path / "events.jsonl") if e["type"] == "page_cache_dropped"]
    assert (dropped["dropped"], dropped["free_before_gib"], dropped["free_after_gib"], dropped["need_gib"]) == (
        True, 20.0, 70.0, 60.0
    )  # fmt: skip


@pytest.fixture
def other_runs_target(tmp_path: Path) -> Iterator[subprocess.Popen]:
    """A process labelled as another run's serve target, as ProcessRuntime starts one."""
    env = {**os.environ, "GB10_RUN_ID": "other-run-1", "GB10_ENV_DIR": str(tmp_path / "other" / "env")}
    proc = subprocess.Popen(["sleep", "300"], env=env, start_new_session=True)
    yield proc
    proc.kill()
    proc.wait(5)


@pytest.mark.serial  # the /proc scan's 3 s deadline
def test_another_run_s_live_target_refuses_a_start_and_only_warns_validate(
    tmp_path: Path, other_runs_target: subprocess.Popen, capsys
) -> None:
    scan = live_targets()
    [found] = [t for t in scan.targets if t.run_id == "other-run-1"]
    assert found.pid == other_runs_target.pid and found.env_dir == str(tmp_path / "other" / "env")
    assert all(t.run_id != "other-run-1" for t in live_targets(exclude_run="other-run-1").targets)
    plan = _vllm_plan(tmp_path, "0.01").read_text().replace('unified_memory = "yes"', 'unified_memory = "no"')
    (tmp_path / "plan.toml").write_text(plan)
    assert main(["validate", str(tmp_path / "plan.toml")]) == 0
    assert f"another run's serve target is live on this host: pid {other_runs_target.pid}" in capsys.readouterr().out
    assert main(["run", str(tmp_path / "plan.toml"), "--headless", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"pid {other_runs_target.pid} (1 process(es), run other-run-1" in err and "pass --force" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.serial  # the /proc scan's 3 s deadline
def test_runs_see_each_other_s_live_targets_only_within_one_host_scope(monkeypatch) -> None:
    """GB10_HOST_SCOPE (unset for users: one scope for every run) splits the host for concurrent test workers."""
    env = {**os.environ, "GB10_RUN_ID": "other-run-2", HOST_SCOPE_VAR: "elsewhere"}
    proc = subprocess.Popen(["sleep", "300"], env=env, start_new_session=True)
    try:
        assert process_scope(proc.pid) == "elsewhere" and process_scope(os.getpid()) == own_scope() != "elsewhere"
        assert all(t.run_id != "other-run-2" for t in live_targets().targets)
        monkeypatch.setenv(HOST_SCOPE_VAR, "elsewhere")
        [found] = [t for t in live_targets().targets if t.run_id == "other-run-2"]
        assert found.pid == proc.pid
        monkeypatch.delenv(HOST_SCOPE_VAR)  # the default scope is a scope of its own
        assert all(t.run_id != "other-run-2" for t in live_targets().targets)
    finally:
        proc.kill()
        proc.wait(5)
