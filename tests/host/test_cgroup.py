"""A process's memory cgroup (runners/host/cgroup.py), in fake /proc and /sys trees: its OOM-kill count and what it
holds (usage, limit, pressure), cgroup v1 and v2, and what cannot be known.
"""

from __future__ import annotations

from pathlib import Path

from engine.units import GIB
from runners.host.cgroup import CgroupMemory, MemoryCgroup, memory_cgroup
from runners.host.psi import parse_psi
from tests.support.fake_host import PSI, fake_proc


def test_cgroup_v1_reads_oom_kill_from_oom_control(tmp_path: Path) -> None:
    """v1: the memory controller's directory, oom_kill from memory.oom_control."""
    proc = fake_proc(tmp_path, 77, "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/system.slice\n")
    root = tmp_path / "sys" / "fs" / "cgroup"
    group = root / "memory" / "docker" / "abc"
    group.mkdir(parents=True)
    found = memory_cgroup(77, proc=proc, root=root)
    assert found == MemoryCgroup(group, 1)
    assert found.oom_kills() is None  # no memory.oom_control yet: unknown, not 0
    (group / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    assert found.oom_kills() == 3
    (group / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")  # kernel < 4.13
    assert found.oom_kills() is None


def test_cgroup_v2_reads_oom_kill_from_memory_events(tmp_path: Path) -> None:
    """v2: the unified path with memory.events; oom_kill 0 is 0, not None."""
    proc = fake_proc(tmp_path, 88, "0::/system.slice/docker-abc.scope\n")
    root = tmp_path / "sys" / "fs" / "cgroup"
    group = root / "system.slice" / "docker-abc.scope"
    group.mkdir(parents=True)
    assert memory_cgroup(88, proc=proc, root=root) is None  # no memory controller enabled there
    events = group / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 12\noom 0\noom_kill 0\noom_group_kill 0\n")
    found = memory_cgroup(88, proc=proc, root=root)
    assert found == MemoryCgroup(group, 2)
    assert found.oom_kills() == 0
    events.write_text("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 1\n")
    assert found.oom_kills() == 2
    events.unlink()
    assert found.oom_kills() is None


def test_cgroup_unknowns_are_none(tmp_path: Path) -> None:
    """No such pid, or a v1 memory cgroup whose directory is gone: None."""
    root = tmp_path / "sys" / "fs" / "cgroup"
    assert memory_cgroup(12345, proc=tmp_path / "proc", root=root) is None
    proc = fake_proc(tmp_path, 99, "4:memory:/docker/gone\n")
    assert memory_cgroup(99, proc=proc, root=root) is None


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
