"""The suite's leak check finds a process by the host scope it inherited, names its test, and kills it."""

from __future__ import annotations

import os
import subprocess

from runners.host.scope import HOST_SCOPE_VAR
from tests.support.leaks import reap_leaks, scoped_processes


def test_a_process_left_in_a_scope_is_found_named_and_killed() -> None:
    env = {**os.environ, HOST_SCOPE_VAR: f"leak-check-{os.getpid()}"}
    proc = subprocess.Popen(["sleep", "300"], env=env, start_new_session=True)
    try:
        [found] = scoped_processes(env[HOST_SCOPE_VAR])
        assert (found.pid, found.command) == (proc.pid, "sleep 300")
        assert found.test.startswith("tests/test_leak_check.py::test_a_process_left_in_a_scope_is_found_named_and_k")
        assert [p.pid for p in reap_leaks(env[HOST_SCOPE_VAR], grace_s=0.3)] == [proc.pid]
        assert proc.wait(5) == -9
        assert scoped_processes(env[HOST_SCOPE_VAR]) == []
    finally:
        proc.kill()
        proc.wait(5)
