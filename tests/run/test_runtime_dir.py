"""The private runtime directory on real files: 0700 at every level, refusals of what someone else may have
planted, and the sweep of a killed runner's directory (only that one)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from runners.run.runtime_dir import (
    RUNNER_FILE,
    RUNTIME_DIR_VAR,
    RuntimeDirError,
    ensure_private_dir,
    open_run_runtime,
    runtime_root,
    sweep_stale,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_every_level_is_0700_and_removal_takes_the_values(tmp_path: Path) -> None:
    before = os.umask(0o022)  # an open umask must not open the directories
    try:
        private = open_run_runtime("run-1", tmp_path / "rt")
    finally:
        os.umask(before)
    env_dir = private.session_env_dir("a", "primary")
    (env_dir / "ENV").write_text("HF_TOKEN=x\n")
    levels = [tmp_path / "rt", private.path, private.path / "a", private.path / "a" / "primary", env_dir]
    assert [mode(p) for p in levels] == [0o700] * 5
    assert json.loads((private.path / RUNNER_FILE).read_text())["pid"] == os.getpid()
    private.remove_session("a", "primary")
    assert not (private.path / "a" / "primary").exists() and private.path.exists()
    private.remove()
    assert not private.path.exists()


def test_a_planted_link_an_open_mode_or_a_bad_name_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(RuntimeDirError, match="is not a directory"):
        ensure_private_dir(tmp_path / "link")
    (tmp_path / "open").mkdir()
    (tmp_path / "open").chmod(0o755)
    with pytest.raises(RuntimeDirError, match="mode 0755, not 0700"):
        ensure_private_dir(tmp_path / "open")
    with pytest.raises(RuntimeDirError, match="cannot name"):
        open_run_runtime("..", tmp_path / "rt")


def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to make a directory owned by another uid")
    (tmp_path / "theirs").mkdir(mode=0o700)
    os.chown(tmp_path / "theirs", 65534, 65534)
    with pytest.raises(RuntimeDirError, match="owned by uid 65534"):
        ensure_private_dir(tmp_path / "theirs")


def test_the_root_is_gb10_runtime_dir_else_tmp_never_xdg_runtime_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """XDG_RUNTIME_DIR goes when the user's last session ends (logind), and a soak outlives its ssh session."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv(RUNTIME_DIR_VAR, str(tmp_path / "mine"))
    assert runtime_root() == tmp_path / "mine"
    monkeypatch.delenv(RUNTIME_DIR_VAR)
    assert runtime_root() == Path("/tmp") / f"gb10-console-{os.getuid()}"
    monkeypatch.setenv(RUNTIME_DIR_VAR, "relative/dir")
    assert runtime_root() == Path("/tmp") / f"gb10-console-{os.getuid()}"


def test_the_sweep_removes_a_killed_runners_directory_and_keeps_a_live_ones(tmp_path: Path) -> None:
    root = tmp_path / "rt"
    live = open_run_runtime("live", root)
    dead = ensure_private_dir(root / "dead")
    proc = subprocess.Popen(["true"])
    proc.wait()  # a pid that is gone
    (dead / RUNNER_FILE).write_text(json.dumps({"pid": proc.pid, "started": 1.0, "host": ""}))
    fresh = ensure_private_dir(root / "fresh")  # no runner.json yet: a runner between mkdir and its write
    assert sweep_stale(root) == ["dead"]
    assert live.path.exists() and fresh.exists() and not dead.exists()
    root.chmod(0o755)  # a root that is not private is not read at all
    assert sweep_stale(root) == []
