"""A real run of the embedded engine is private: run directory 0750/0640, the ENV sentinel in a 0700 runtime
directory outside it that is gone when the run ends."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runners.run.files import read_json
from runners.run.runtime_dir import runtime_root
from tests.support.plans import write_plan
from tests.support.processes import run_headless
from tests.support.project import ENGINE_CONFIG

pytestmark = pytest.mark.slow


def test_a_run_keeps_its_real_values_out_of_the_run_directory(tmp_path: Path) -> None:
    seen = tmp_path / "seen"  # what the serve command saw of its env dir: mode, owner, path, the ENV's lines
    script = (f'stat -c "%a %u %n" "$2" "$2/.." "$2/../../.." >> {seen}; cat "$2/ENV" >> {seen}; shift 2; '
              'exec "$0" "$@"')  # fmt: skip
    command = ["/bin/sh", "-c", script, "{python}", "-", "{env_dir}", "-m", "engine.server", "--config",
               str(ENGINE_CONFIG), "--port", "{port}", "--env-dir", "{env_dir}"]  # fmt: skip
    out = tmp_path / "run"
    result = run_headless(write_plan(tmp_path, command=command, env={"HF_TOKEN": "hf_planted_value"}), out)
    assert result.returncode == 0, result.stderr + result.stdout
    lines = seen.read_text().splitlines()
    modes = [line.split(" ", 2) for line in lines if line[:1].isdigit() and " /" in line]
    assert len(modes) == 6 and all(m == "700" and int(u) == os.getuid() for m, u, _ in modes), lines
    env_dirs = {Path(p) for _, _, p in modes if p.endswith("/env")}
    run_id = read_json(out / "run.json")["run_id"]
    private = runtime_root() / run_id
    assert {d.parent.parent.parent for d in env_dirs} == {private}, (env_dirs, private)
    assert "HF_TOKEN=hf_planted_value" in lines  # the target got the real value
    assert not private.exists()  # gone with the run
    assert stat.S_IMODE(runtime_root().stat().st_mode) == 0o700
    for path in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode & 0o027 == 0, f"{path} has mode {mode:04o}"  # no group-write, nothing for others
        assert path.name != "ENV" and not (path.is_dir() and path.name == "env"), path
    assert stat.S_IMODE(out.stat().st_mode) == 0o750 and stat.S_IMODE((out / "run.json").stat().st_mode) == 0o640
