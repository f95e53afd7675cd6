"""Who owns a container (runners/host/owner.py): process start times read from a fake /proc, the owner label,
whether its runner still lives, and the run's labels.
"""

from __future__ import annotations

import socket
from pathlib import Path

from runners.host.owner import Owner, process_start_ticks, run_labels


def fake_stat(proc: Path, pid: int, comm: str, start_ticks: int) -> None:
    """Write proc/<pid>/stat with `comm` as field 2 and `start_ticks` as field 22."""
    after = ["S", "1", str(pid), str(pid), "0", "-1", "4194560"] + [str(n) for n in range(8, 20)]
    after += [str(start_ticks), "123456789", "42"]
    assert len(after) == 22 and after[19] == str(start_ticks)  # fields 3.. ; field 22 is index 19
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "stat").write_text(f"{pid} ({comm}) {' '.join(after)}\n")


def test_process_start_ticks_reads_field_22_past_a_tricky_comm(tmp_path: Path) -> None:
    """Field 22 is found even when the command name holds spaces and parentheses."""
    proc = tmp_path / "proc"
    fake_stat(proc, 100, "python3", 5555)
    fake_stat(proc, 200, "vllm (worker) 1 2 3", 7777)
    fake_stat(proc, 300, "a) S 1 (b", 9999)
    assert process_start_ticks(100, proc) == 5555
    assert process_start_ticks(200, proc) == 7777
    assert process_start_ticks(300, proc) == 9999
    assert process_start_ticks(400, proc) is None


def test_owner_label_round_trips_and_bad_labels_are_none() -> None:
    """HOST/PID/START parses back; anything else is None."""
    owner = Owner("spark-01.lan", 4321, 987654)
    assert Owner.parse(owner.label) == owner
    assert Owner.parse("a/b/12/34") == Owner("a/b", 12, 34)
    for bad in ("", "host", "host/12", "host/x/34", "host/12/", "/12/34", "host/12/3.5"):
        assert Owner.parse(bad) is None, bad


def test_owner_alive_checks_pid_and_start_time(tmp_path: Path) -> None:
    """Alive only when the pid runs with the same start time; another host cannot be told."""
    proc = tmp_path / "proc"
    fake_stat(proc, 4321, "gb10 (console)", 1000)
    assert Owner("h", 4321, 1000).alive("h", proc) is True
    assert Owner("h", 4321, 999).alive("h", proc) is False  # pid reused by a newer process
    assert Owner("h", 9999, 1000).alive("h", proc) is False  # gone
    assert Owner("other", 4321, 1000).alive("h", proc) is None
    assert Owner(socket.gethostname(), 4321, 1000).alive(None, proc) is True


def test_run_labels() -> None:
    """Every container carries run id, arm, mode and owner."""
    assert run_labels("r", "a", "supplementary", Owner("h", 1, 2)) == {
        "gb10.run-id": "r",
        "gb10.arm": "a",
        "gb10.mode": "supplementary",
        "gb10.owner": "h/1/2",
    }
