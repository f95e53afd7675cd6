"""`gb10-console doctor` as a person and a script run it: the real CLI in a subprocess, its table, its JSON and its
exit code, on this host and against the suite's Docker engine."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.docker_env import DockerEngine
from tests.support.plans import Plan
from tests.support.project import ROOT

CLI = ROOT / ".venv" / "bin" / "gb10-console"
STATUSES = {"ok", "warn", "fail", "skipped"}


def doctor(*args: str, engine: DockerEngine | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`gb10-console doctor ARGS` (DOCKER_HOST at the suite's engine when given), bounded."""
    env = {**os.environ, "COLUMNS": "200"}
    if engine is not None:
        env["DOCKER_HOST"] = f"unix://{engine.socket}"
    return subprocess.run([str(CLI), "doctor", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_without_a_plan_the_host_checks_and_their_exit_code(tmp_path: Path) -> None:
    done = doctor("--json", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    body = json.loads(done.stdout)
    names = [c["name"] for c in body["checks"]]
    assert names == ["docker daemon", "disk", "logind RemoveIPC", "memory"], done.stdout
    assert {c["status"] for c in body["checks"]} <= STATUSES and body["runs_dir"] == str(tmp_path / "runs")
    failing = [c for c in body["checks"] if c["status"] == "fail"]
    assert body["ok"] is not failing and done.returncode == (1 if failing else 0), done.stdout
    assert all(c["fix"] for c in failing)  # every failure says what to do
    disk = body["checks"][1]
    assert f"free at {tmp_path}" in disk["detail"]  # the nearest directory that exists
    table = doctor("--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert table.returncode == done.returncode and table.stderr == ""
    for name in names:
        assert name in table.stdout
    assert ("a check failed" if failing else "nothing failed") in table.stdout


def test_a_bad_plan_is_an_error_line_not_a_traceback(tmp_path: Path) -> None:
    done = doctor(str(tmp_path / "nope.toml"))
    assert done.returncode == 2 and done.stderr.startswith("error:") and "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_docker_plan_whose_image_and_gpus_the_engine_lacks_fails(tmp_path: Path, docker_engine: DockerEngine,
                                                                   busybox_image: str) -> None:  # fmt: skip
    serve = {"kind": "docker", "image": "gb10-test/not-here:1", "gpus": "none", "ipc": "private",
             "command": ["httpd", "-f", "-p", "{port}", "-h", "{host}"]}  # fmt: skip
    phase = {"name": "c", "kind": "concurrent", "streams": 1}
    missing = Plan("doc", serve, [{"name": "a"}], [phase]).write(tmp_path / "missing")
    done = doctor(str(missing), "--json", engine=docker_engine)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert done.returncode == 1 and checks["image"]["status"] == "fail" and "never pulls" in checks["image"]["fix"]
    assert checks["docker daemon"]["status"] == "ok" and str(docker_engine.socket) in checks["docker daemon"]["detail"]
    table = doctor(str(missing), engine=docker_engine)
    assert table.returncode == 1 and "gb10-test/not-here:1" in table.stdout and "a check failed" in table.stdout
    present = Plan("doc", {**serve, "image": busybox_image, "gpus": "all"}, [{"name": "a"}], [phase])
    done = doctor(str(present.write(tmp_path / "present")), "--json", engine=docker_engine)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["image"]["status"] == "ok" and checks["gpu runtime"]["status"] in ("ok", "fail")
    if checks["gpu runtime"]["status"] == "fail":  # the suite's own dockerd has no GPU runtime
        assert done.returncode == 1 and "nvidia-ctk" in checks["gpu runtime"]["fix"]
