"""`gb10-console serve-web`: a real textual-serve server on loopback, seen by headless Chromium and by a
bare websocket client."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from console.cli.web import WebError, console_command, pick_run
from runners.run.runs import create_run
from tests.support.plans import write_plan
from tests.support.processes import free_port, stop_process
from tests.support.project import ROOT
from tests.support.waits import wait_until

aiohttp = pytest.importorskip("aiohttp", reason="textual-serve (and its aiohttp) is not installed: make venv")
from tests.console.chromium_cdp import find_chromium, open_page  # noqa: E402  (needs aiohttp)

pytestmark = pytest.mark.xdist_group("web-console")  # one server per module

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")
SCREEN_DEADLINE_S = 45.0


@dataclass(frozen=True)
class WebConsole:
    """A running `serve-web --readonly` for one run."""

    url: str
    run_id: str
    scratch: Path


@pytest.fixture(scope="module")
def web_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebConsole]:
    """`gb10-console serve-web RUN_DIR --readonly` on a free loopback port, answering HTTP."""
    scratch = tmp_path_factory.mktemp("web")
    run = create_run(write_plan(scratch), scratch / "run", scratch)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (scratch / "serve-web.log").open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "console.cli", "serve-web", str(run.root), "--port",
                                   str(port), "--readonly"], stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        assert wait_until(lambda: _up(url), 30), f"serve-web did not answer at {url} within 30 s"
        yield WebConsole(url, run.info()["run_id"], scratch)
    finally:
        stop_process(server)


def test_pick_run_prefers_the_given_then_the_newest_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with pytest.raises(WebError, match="no run under"):
        pick_run(None, runs)
    run = create_run(write_plan(tmp_path), runs / "r1", runs)
    assert pick_run(None, runs).root == run.root and pick_run(run.root, runs).root == run.root
    assert console_command(run, readonly=True).endswith(f"attach {run.root.resolve()} --readonly")


def test_a_busy_port_is_one_line_on_stderr_and_no_banner(tmp_path: Path) -> None:
    """Something already listens on the port: serve-web says so (address, what to do) before printing that it
    serves, exits 2, and shows no traceback."""
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "console.cli", "serve-web", str(run.root), "--port", str(port)],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert done.returncode == 2 and done.stdout == "", done
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: 127.0.0.1:{port} is already in use"), done.stderr
    assert "--port" in lines[0]


def test_headless_chromium_loads_the_page_and_shows_the_run_id(web_console: WebConsole) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Debian's `chromium` is not installed (make test installs it as root): apt-get install chromium")
    shot = web_console.scratch / "chromium.png"

    async def browse() -> tuple[str, str, list[str]]:
        async with open_page(chromium, web_console.url, web_console.scratch / "profile",
                             web_console.scratch / "chromium.log") as page:  # fmt: skip
            first = await page.wait_for_text(web_console.run_id, SCREEN_DEADLINE_S)
            await page.type_key("?")
            help_screen = await page.wait_for_text("Read-only console", 15)
            if "Read-only console" not in help_screen or web_console.run_id not in first:
                await page.screenshot(shot)
            return first, help_screen, page.exceptions

    first, help_screen, exceptions = asyncio.run(browse())
    assert web_console.run_id in first, f"run id not on the page (screenshot {shot}):\n{first}"
    assert "plan mini" in first.splitlines()[0], first
    assert "Read-only console" in help_screen, f"`?` typed in the browser opened no help ({shot}):\n{help_screen}"
    assert "abort the soak" not in help_screen
    assert not exceptions, exceptions


def test_a_websocket_client_gets_the_screen(web_console: WebConsole) -> None:
    page = httpx.get(web_console.url, timeout=10)
    assert page.status_code == 200 and "/ws" in page.text
    ws_url = web_console.url.replace("http://", "ws://") + "/ws?width=120&height=40"
    screen = asyncio.run(_browser_screen(ws_url, web_console.run_id, SCREEN_DEADLINE_S))
    assert web_console.run_id in screen, screen[-2000:]


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
