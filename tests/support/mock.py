"""Mock servers (runners/testbed/mock_server.py) as tasks of a test's loop, on free loopback ports."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from runners.testbed.mock_server import MockSettings, serve_mock
from tests.support.processes import HOST, free_port

MOCK_START_S = 10.0
MOCK_STOP_S = 5.0

StartMock = Callable[[MockSettings], Awaitable[str]]  # what the start_mock fixture gives a test


async def start_mock_server(settings: MockSettings, tasks: list[asyncio.Task]) -> str:
    """Serve a mock server on a free port as a task appended to `tasks` (the caller cancels them); its base URL
    once it listens. Raises the server's own error when it fails to start."""
    port = free_port()
    ready = asyncio.Event()
    server = asyncio.create_task(serve_mock(HOST, port, settings, ready))
    tasks.append(server)
    listening = asyncio.create_task(ready.wait())
    await asyncio.wait({server, listening}, timeout=MOCK_START_S, return_when=asyncio.FIRST_COMPLETED)
    listening.cancel()
    if server.done():
        server.result()  # raises the server's own error (port taken, ...)
    assert ready.is_set(), f"mock server on {HOST}:{port} not listening within {MOCK_START_S} s"
    return f"http://{HOST}:{port}"


async def stop_mock_servers(tasks: list[asyncio.Task]) -> None:
    """Cancel the servers and wait for them to end (at most MOCK_STOP_S)."""
    for task in tasks:
        task.cancel()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=MOCK_STOP_S)
        assert not pending, "a mock server did not stop when cancelled"
