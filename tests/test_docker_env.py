"""The test engine service is shared by the sessions that use it: the last one to let go stops it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from runners.host.owner import process_start_ticks
from tests.docker_env import SharedService


def test_the_last_session_to_let_go_stops_the_service_and_not_before(tmp_path: Path) -> None:
    starter, joiner = SharedService(tmp_path), SharedService(tmp_path)
    with starter.exclusive():
        service = subprocess.Popen(["sleep", "300"], start_new_session=True)
        starter.started(service)
        starter.join()
    try:
        with joiner.exclusive():
            joiner.join()
        starter.leave()
        assert service.poll() is None  # the other session still uses it
        joiner.leave()  # the last user, though not the one that started it
        assert service.wait(5) == -15  # SIGTERM
        assert not (tmp_path / "service.pid").exists()
    finally:
        service.kill()
        service.wait(5)


def test_a_recorded_pid_now_held_by_another_process_is_never_signalled(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)  # the recorded pid, reused since
    try:
        (tmp_path / "service.pid").write_text(f"{other.pid} {process_start_ticks(other.pid) - 1}\n")
        user = SharedService(tmp_path)
        with user.exclusive():
            user.join()
        user.leave()
        assert other.poll() is None and not (tmp_path / "service.pid").exists()
    finally:
        other.kill()
        other.wait(5)
