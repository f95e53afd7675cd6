"""`gb10-console serve-web`: a real textual-serve server on loopback; a websocket client plays the browser."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from console.web_cli import WebError, console_command, pick_run
from runners.execute import create_run
from tests.conftest import free_port, stop_process, wait_until, write_plan

aiohttp = pytest.importorskip("aiohttp", reason="textual-serve (and its aiohttp) is not installed: make venv")
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")


def test_pick_run_prefers_the_given_then_the_newest_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with pytest.raises(WebError, match="no run under"):
        pick_run(None, runs)
    run = create_run(write_plan(tmp_path), runs / "r1", runs)
    assert pick_run(None, runs).root == run.root and pick_run(run.root, runs).root == run.root
    assert console_command(run, readonly=True).endswith(f"attach {run.root.resolve()} --readonly")


def test_a_browser_session_shows_the_run_id(tmp_path: Path) -> None:
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)
    run_id = run.info()["run_id"]
    port = free_port()
    log = (tmp_path / "serve-web.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "console.cli", "serve-web", str(run.root), "--port", str(port),
                               "--readonly"], stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: _up(url), 30), "serve-web did not answer within 30 s"
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200 and "/ws" in page.text
        screen = asyncio.run(_browser_screen(f"ws://127.0.0.1:{port}/ws?width=120&height=40", run_id, deadline_s=45))
        assert run_id in screen, screen[-2000:]
    finally:
        stop_process(server)
        log.close()


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


async def _browser_screen(ws_url: str, wanted: str, deadline_s: float) -> str:
    """What the console sent to a browser-like websocket client, escape codes removed, until `wanted` shows."""
    text = ""
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        while loop.time() < end and wanted not in text:
            try:
                msg = await asyncio.wait_for(ws.receive(), timeout=max(0.1, end - loop.time()))
            except asyncio.TimeoutError:
                break
            if msg.type == aiohttp.WSMsgType.BINARY:
                text += ANSI.sub("", msg.data.decode("utf-8", "replace"))
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
        await ws.close()
    return text
