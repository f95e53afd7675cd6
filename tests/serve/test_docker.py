"""DockerRuntime's view of a container without a daemon (runners/serve/docker.py): the inspect fields an
operator reads. Its lifecycle is tested against a real daemon (test_docker_runtime.py) and its stop
escalation against a scripted fake engine (test_docker_escalation.py).
"""

from __future__ import annotations

from runners.serve.docker import container_state


def test_container_state_picks_the_fields_an_operator_reads() -> None:
    """container_state() flattens inspect data; empty errors and pid 0 become None."""
    data = {
        "State": {
            "Status": "exited",
            "Running": False,
            "ExitCode": 137,
            "OOMKilled": True,
            "Error": "",
            "Pid": 0,
            "Health": {"Status": "unhealthy"},
            "StartedAt": "2024-01-01T00:00:00Z",
            "FinishedAt": "2024-01-01T00:01:00Z",
        },
        "RestartCount": 0,
    }
    assert container_state(data) == {
        "status": "exited",
        "running": False,
        "exit_code": 137,
        "oom_killed": True,
        "error": None,
        "health": "unhealthy",
        "pid": None,
        "started_at": "2024-01-01T00:00:00Z",
        "finished_at": "2024-01-01T00:01:00Z",
        "restart_count": 0,
    }
    assert container_state({})["running"] is False and container_state({})["status"] is None
