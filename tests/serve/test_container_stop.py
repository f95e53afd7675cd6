"""How a serve container's end is named (runners/serve/container_stop.py): OOM kills, outside kills, the
runner's own stops, and plain exits.
"""

from __future__ import annotations

from runners.serve.container_stop import classify_exit
from runners.serve.runtime import ExitInfo


def test_an_oom_kill_is_named_with_its_evidence() -> None:
    """OOMKilled=true -> OOM-killed, with the cgroup count in the detail; it wins over a stop in progress."""
    info = classify_exit({"ExitCode": 137, "OOMKilled": True}, None, 2)
    assert info == ExitInfo(137, "OOM-killed", "OOMKilled=true; cgroup oom_kill 2")
    assert info.describe() == "OOM-killed (exit code 137); OOMKilled=true; cgroup oom_kill 2"
    assert classify_exit({"ExitCode": 137, "OOMKilled": True}, "terminated", None).how == "OOM-killed"


def test_outside_kills_and_our_own_stops_are_told_apart() -> None:
    """137 with no stop is an outside SIGKILL; with a stop it is the grace period or our kill."""
    outside = classify_exit({"ExitCode": 137, "OOMKilled": False}, None, 0)
    assert outside.how == "killed by SIGKILL from outside the runner" and outside.detail == ""
    assert outside.describe() == "killed by SIGKILL from outside the runner (exit code 137)"
    assert classify_exit({"ExitCode": 143}, None, None).how == "killed by SIGTERM from outside the runner"
    graced = classify_exit({"ExitCode": 137}, "terminated", None)
    assert "grace period" in graced.how
    assert classify_exit({"ExitCode": 143}, "terminated", None).how == "terminated"
    assert classify_exit({"ExitCode": 137}, "killed", None) == ExitInfo(137, "killed", "")


def test_a_clean_or_failed_exit_is_exited() -> None:
    """Exit 0 or 1 with no stop is 'exited'; Error is noted; a missing code is None."""
    assert classify_exit({"ExitCode": 0}, None, None).describe() == "exited (exit code 0)"
    failed = classify_exit({"ExitCode": 1, "Error": "cuda init failed"}, None, 1)
    assert failed.describe() == "exited (exit code 1); cgroup oom_kill 1; error: cuda init failed"
    assert classify_exit({}, None, None) == ExitInfo(None, "exited", "")
