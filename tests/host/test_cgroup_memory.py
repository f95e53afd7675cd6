"""What a process's memory cgroup holds (runners/host/cgroup.py `MemoryCgroup.read`), v1 and v2, in fake /proc and
cgroup trees under tmp_path: usage, limit, OOM kills and pressure."""

from __future__ import annotations

from pathlib import Path

from engine.units import GIB
from runners.host.cgroup import CgroupMemory, MemoryCgroup, memory_cgroup
from runners.host.psi import parse_psi
from tests.support.fake_host import PSI, fake_proc


def test_cgroup_v1_read(tmp_path: Path) -> None:
    """v1: usage_in_bytes, limit_in_bytes, oom_control; no PSI; an unlimited limit is None."""
    proc = fake_proc(tmp_path, 41, "4:memory:/docker/abc\n")
    root = tmp_path / "cgroup"
    group = root / "memory" / "docker" / "abc"
    group.mkdir(parents=True)
    (group / "memory.usage_in_bytes").write_text("1048576\n")
    (group / "memory.limit_in_bytes").write_text("17179869184\n")
    (group / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    found = memory_cgroup(41, proc=proc, root=root)
    assert found == MemoryCgroup(group, 1)
    assert found.read() == CgroupMemory(1, 1048576, 16 * GIB, 2, None)
    (group / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert found.read().limit_bytes is None
    (group / "memory.usage_in_bytes").unlink()
    assert found.read().usage_bytes is None


def test_cgroup_v2_read(tmp_path: Path) -> None:
    """v2: memory.current, memory.max ("max" is None), memory.events, memory.pressure (None when absent)."""
    proc = fake_proc(tmp_path, 42, "0::/system.slice/docker-abc.scope\n")
    root = tmp_path / "cgroup"
    group = root / "system.slice" / "docker-abc.scope"
    group.mkdir(parents=True)
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n")
    (group / "memory.current").write_text("2097152\n")
    (group / "memory.max").write_text("max\n")
    found = memory_cgroup(42, proc=proc, root=root)
    assert found is not None
    assert found.read() == CgroupMemory(2, 2097152, None, 1, None)
    (group / "memory.max").write_text("8589934592\n")
    (group / "memory.pressure").write_text(PSI)
    assert found.read() == CgroupMemory(2, 2097152, 8 * GIB, 1, parse_psi(PSI))
