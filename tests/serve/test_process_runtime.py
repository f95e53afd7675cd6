"""ProcessRuntime against real processes: it never leaves one behind."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from runners.host.meminfo import read_oom_kill_count
from runners.serve import process as process_module
from runners.serve.process import ProcessRuntime
from runners.serve.runtime import ServeError
from tests.support.processes import pid_gone
from tests.support.project import ENGINE_CONFIG
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow

ENGINE_CMD = [sys.executable, "-m", "engine.server", "--config", str(ENGINE_CONFIG), "--host", "{host}",
              "--port", "{port}", "--env-dir", "{env_dir}"]  # fmt: skip


def runtime(tmp_path: Path, command: list[str], env: dict[str, str]) -> ProcessRuntime:
    return ProcessRuntime(command, env, tmp_path / "serve.log", tmp_path / "env")


async def test_start_ready_stop_leaves_no_process_in_the_group(tmp_path: Path) -> None:
    # the target leaves a grandchild in its process group, as vLLM's EngineCore would
    marker = tmp_path / "grandchild.pid"
    shell = f"sleep 300 & echo $! > {marker}; exec {' '.join(ENGINE_CMD)}"
    rt = runtime(tmp_path, ["/bin/sh", "-c", shell], {"CUTE_WO_SPLIT": "2"})
    await rt.start()
    ready = await rt.wait_ready(60)
    assert ready.model == "gb10-tiny"
    assert (tmp_path / "env" / "ENV").read_text().splitlines()[-1] == "CUTE_WO_SPLIT=2"
    assert (await rt.probe()).healthy
    server_pid, grandchild = rt.pid, int(marker.read_text())
    # its own process group, but the runner's session: a new session is a new CPU autogroup (issue 19)
    assert os.getpgid(server_pid) == server_pid != os.getpgid(0)
    assert os.getsid(server_pid) == os.getsid(0)
    ended = await rt.stop(grace_s=10)
    assert ended.how == "terminated"
    assert wait_until(lambda: pid_gone(server_pid) and pid_gone(grandchild), 10)
    assert (await rt.inspect())["running"] is False
    assert "engine: serving gb10-tiny" in "\n".join(rt.logs())


async def test_exit_before_ready_is_reported_with_the_log_tail(tmp_path: Path) -> None:
    rt = runtime(tmp_path, ENGINE_CMD, {"CUTE_WO_SPLIT": "3"})
    await rt.start()
    with pytest.raises(ServeError) as info:
        await rt.wait_ready(60)
    message = str(info.value)
    assert "exited with code 2 before it was ready" in message
    assert "refusing to start: CUTE_WO_SPLIT (from env): '3'" in message
    assert str(tmp_path / "serve.log") in message
    assert (await rt.stop(5)).returncode == 2


async def test_a_target_that_never_gets_ready_hits_the_deadline(tmp_path: Path) -> None:
    rt = runtime(tmp_path, [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "{port}"], {})
    await rt.start()
    with pytest.raises(ServeError, match=r"not ready after 3 s \(last: /health answered 404\)"):
        await rt.wait_ready(3)
    pid = rt.pid
    await rt.stop(5)
    assert pid_gone(pid)


async def test_kill_escalates_when_sigterm_is_ignored(tmp_path: Path) -> None:
    # the marker is assembled at run time: serve.log's header echoes the command line itself
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ig' + 'noring', flush=True); time.sleep(300)"
    )
    rt = runtime(tmp_path, [sys.executable, "-c", code, "{port}"], {})
    await rt.start()
    assert wait_until(lambda: "ignoring" in (tmp_path / "serve.log").read_text(), 10)
    ended = await rt.stop(grace_s=0.5)
    assert ended.how == "killed" and ended.returncode == -9
    assert pid_gone(rt.pid)


async def test_a_missing_command_is_a_clear_error(tmp_path: Path) -> None:
    rt = runtime(tmp_path, ["/nonexistent/vllm", "{port}"], {})
    with pytest.raises(ServeError, match="cannot start serve command '/nonexistent/vllm'"):
        await rt.start()


@pytest.mark.parametrize(("counts", "how"), [((5, 6), "OOM-killed"), ((5, 5), "exited"), ((None, None), "exited")])
async def test_a_sigkill_from_outside_while_the_oom_killer_worked_is_an_oom_kill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counts: tuple, how: str
) -> None:
    """The host's /proc/vmstat oom_kill rose while the target ran and it died of a SIGKILL nobody here sent."""
    readings = iter(counts)
    monkeypatch.setattr(process_module, "read_oom_kill_count", lambda: next(readings))
    rt = runtime(tmp_path, ["sleep", "300"], {})
    await rt.start()
    os.kill(rt.pid, signal.SIGKILL)  # as the kernel's OOM killer does
    ended = await rt.wait_exit()
    assert (ended.how, ended.returncode) == (how, -9)
    if how == "OOM-killed":
        assert ended.describe() == (
            "OOM-killed (signal 9); the host's OOM killer ended 1 process(es) while it ran (/proc/vmstat oom_kill)"
        )


def test_the_host_oom_kill_count_is_read_from_vmstat(tmp_path: Path) -> None:
    (tmp_path / "vmstat").write_text("nr_free_pages 12\noom_kill 7\npgfault 3\n")
    assert read_oom_kill_count(tmp_path) == 7
    (tmp_path / "vmstat").write_text("nr_free_pages 12\n")  # a kernel before 4.13
    assert read_oom_kill_count(tmp_path) is None and read_oom_kill_count(tmp_path / "nowhere") is None
    assert isinstance(read_oom_kill_count(), int)  # this host's
