"""`gb10-console serve-web`: a real textual-serve server on loopback, seen by headless Chromium and by a
bare websocket client, and refused to anything without its token or from another origin."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from console.cli.web import WebError, console_command, pick_run
from console.web.access import Access
from runners.run.runs import create_run
from tests.support.plans import write_plan
from tests.support.processes import free_port, stop_process
from tests.support.project import ROOT
from tests.support.waits import wait_until

aiohttp = pytest.importorskip("aiohttp", reason="textual-serve (and its aiohttp) is not installed: make venv")
from aiohttp import web  # noqa: E402

from tests.console.chromium_cdp import find_chromium, open_page  # noqa: E402  (needs aiohttp)

pytestmark = pytest.mark.xdist_group("web-console")  # one server per module

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")
SCREEN_DEADLINE_S = 45.0
FOREIGN_PAGE = """<!DOCTYPE html><html><body><script>
window.seen = {opened: false, messages: 0, error: false, closed: false};
const socket = new WebSocket(WS_URL);
socket.onopen = () => { window.seen.opened = true; };
socket.onmessage = () => { window.seen.messages += 1; };
socket.onerror = () => { window.seen.error = true; };
socket.onclose = () => { window.seen.closed = true; };
</script></body></html>"""


BANNER_URL = re.compile(r"at (http://127\.0\.0\.1:\d+)/\?token=([A-Za-z0-9_-]+) ")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class WebConsole:
    """A running `serve-web --readonly` for one run: its address, the token it printed, what it wrote."""

    base: str
    token: str
    run_id: str
    run_root: Path
    scratch: Path
    pid: int

    @property
    def url(self) -> str:
        """The URL serve-web printed, token included."""
        return f"{self.base}/?token={self.token}"

    @property
    def ws_url(self) -> str:
        """The page's websocket, without the token."""
        return self.base.replace("http://", "ws://") + "/ws?width=120&height=40"

    def terminal(self) -> str:
        """What serve-web printed (stdout and stderr)."""
        return (self.scratch / "serve-web.log").read_text()

    def consoles(self) -> set[int]:
        """The console processes (`attach`) serve-web runs now, one per open websocket."""
        children = psutil.Process(self.pid).children(recursive=True)
        return {child.pid for child in children if "attach" in _cmdline(child)}


@pytest.fixture(scope="module")
def web_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebConsole]:
    """`gb10-console serve-web RUN_DIR --readonly` on a free loopback port, answering HTTP."""
    scratch = tmp_path_factory.mktemp("web")
    run = create_run(write_plan(scratch), scratch / "run", scratch)
    port = free_port()
    log = scratch / "serve-web.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "console.cli", "serve-web", str(run.root), "--port",
                                   str(port), "--readonly"], stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        assert wait_until(lambda: BANNER_URL.search(log.read_text()), 30), f"no URL printed in 30 s: {log.read_text()}"
        base, token = BANNER_URL.search(log.read_text()).groups()
        web = WebConsole(base, token, run.info()["run_id"], run.root, scratch, server.pid)
        assert wait_until(lambda: _up(web.url), 30), f"serve-web did not answer at {base} within 30 s"
        yield web
    finally:
        stop_process(server)


def test_pick_run_prefers_the_given_then_the_newest_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with pytest.raises(WebError, match="no run under"):
        pick_run(None, runs)
    run = create_run(write_plan(tmp_path), runs / "r1", runs)
    assert pick_run(None, runs).root == run.root and pick_run(run.root, runs).root == run.root
    assert console_command(run, readonly=True).endswith(f"attach {run.root.resolve()} --readonly")


def test_access_takes_only_the_names_the_server_listens_on() -> None:
    """127.0.0.1 is served under that name only (`localhost` may reach ::1, where another program may listen);
    `localhost` also under the addresses it resolves to. The token stays out of the repr and the reasons."""
    numeric, named = Access.fresh("127.0.0.1", 8765), Access.fresh("localhost", 8765)
    assert numeric.origins == {"http://127.0.0.1:8765"}
    assert {"http://localhost:8765", "http://127.0.0.1:8765"} <= named.origins
    assert numeric.refusal("127.0.0.1:8765", "http://127.0.0.1:8765", True, numeric.token) is None
    refusals = [numeric.refusal("localhost:8765", None, False, numeric.token),
                numeric.refusal("127.0.0.1:8765", "http://127.0.0.1:8766", True, numeric.token),
                numeric.refusal("127.0.0.1:8765", None, True, numeric.token),
                numeric.refusal("127.0.0.1:8765", None, False, named.token)]  # fmt: skip
    assert all(refusals) and not any(numeric.token in reason for reason in refusals), refusals
    assert numeric.token not in repr(numeric) and numeric.url.endswith(f"/?token={numeric.token}")


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
    """The printed URL works in a real browser, whose network log shows requests to this server only (the
    fonts from the package, no fonts.googleapis.com); the token is in no file of the run directory."""
    chromium = _chromium()
    shot = web_console.scratch / "chromium.png"

    async def browse() -> tuple[str, str, list[str], list[str]]:
        async with open_page(chromium, web_console.url, web_console.scratch / "profile",
                             web_console.scratch / "chromium.log") as page:  # fmt: skip
            first = await page.wait_for_text(web_console.run_id, SCREEN_DEADLINE_S)
            await page.type_key("?")
            help_screen = await page.wait_for_text("Read-only console", 15)
            if "Read-only console" not in help_screen or web_console.run_id not in first:
                await page.screenshot(shot)
            return first, help_screen, page.exceptions, page.requested

    first, help_screen, exceptions, requested = asyncio.run(browse())
    assert web_console.run_id in first, f"run id not on the page (screenshot {shot}):\n{first}"
    assert "plan mini" in first.splitlines()[0], first
    assert "Read-only console" in help_screen, f"`?` typed in the browser opened no help ({shot}):\n{help_screen}"
    assert "abort the soak" not in help_screen
    assert not exceptions, exceptions
    assert web_console.ws_url.split("?")[0] in {url.split("?")[0] for url in requested}, requested
    assert any("/static/js/textual.js" in url for url in requested), requested
    assert any("/static/fonts/RobotoMono" in url for url in requested), f"the font not from this server: {requested}"
    outside = [url for url in requested if urlsplit(url).netloc.rsplit(":", 1)[0] not in LOOPBACK_HOSTS]
    assert not outside, f"the page asked for more than loopback: {outside}"
    holding = [path for path in web_console.run_root.rglob("*") if path.is_file() and
               web_console.token.encode() in path.read_bytes()]  # fmt: skip
    assert not holding, f"the token was written to {holding}"
    assert web_console.terminal().count(web_console.token) == 1, "the token printed more than once (banner only)"


def test_a_page_from_another_origin_gets_no_console(web_console: WebConsole) -> None:
    """A page served from another loopback port opens the console's websocket, token and all: serve-web refuses
    it (403) before starting a console, and the page sees the socket fail without one message."""
    chromium = _chromium()
    before = web_console.consoles()
    state = asyncio.run(_visit_foreign_page(chromium, web_console))
    assert state is not None, "the foreign page's script did not run (see foreign-chromium.log)"
    assert state["error"] and state["closed"] and not state["opened"], state
    assert state["messages"] == 0, state
    assert wait_until(lambda: "refused GET /ws: Origin" in web_console.terminal(), 10), web_console.terminal()
    assert not web_console.consoles() - before, "a console process was started for the refused websocket"


def test_plain_clients_without_the_token_or_from_elsewhere_get_403(web_console: WebConsole) -> None:
    """HTTP and websocket clients: no token, a wrong token, a foreign Origin or Host, or a websocket without
    Origin: 403 and nothing of the console; the page's own origin with the token gets in."""
    own = {"Origin": web_console.base}
    evil = {"Origin": "http://evil.example.com"}
    refused_http = [
        httpx.get(web_console.base + "/", timeout=10),
        httpx.get(web_console.base + "/?token=not-" + web_console.token, timeout=10),
        httpx.get(web_console.base + "/static/js/textual.js", timeout=10),
        httpx.get(web_console.url, headers=evil, timeout=10),
        httpx.get(web_console.url, headers={"Host": f"evil.example.com:{urlsplit(web_console.base).port}"}, timeout=10),
    ]
    assert [answer.status_code for answer in refused_http] == [403] * len(refused_http)
    assert not any(web_console.run_id in answer.text or "/ws" in answer.text for answer in refused_http)
    before = web_console.consoles()
    with_token = f"{web_console.ws_url}&token={web_console.token}"
    refused_ws = [(web_console.ws_url, own), (with_token, evil), (with_token, {})]
    assert [asyncio.run(_handshake_status(url, headers)) for url, headers in refused_ws] == [403, 403, 403]
    assert not web_console.consoles() - before, "a console process was started for a refused websocket"
    page = httpx.get(web_console.url, timeout=10)
    assert page.status_code == 200 and "googleapis" not in page.text and "RobotoMono" in page.text
    font = httpx.get(web_console.base + "/static/fonts/RobotoMono-VariableFont_wght.ttf", cookies=page.cookies)
    assert font.status_code == 200 and len(font.content) > 10_000


def test_a_websocket_client_gets_the_screen(web_console: WebConsole) -> None:
    """A client that sends the page's Origin and the token gets the console's screen."""
    page = httpx.get(web_console.url, timeout=10)
    assert page.status_code == 200 and "/ws" in page.text
    ws_url = f"{web_console.ws_url}&token={web_console.token}"
    screen = asyncio.run(_browser_screen(ws_url, web_console.base, web_console.run_id, SCREEN_DEADLINE_S))
    assert web_console.run_id in screen, screen[-2000:]


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _chromium() -> str:
    """Debian's Chromium, or skip the test."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Debian's `chromium` is not installed (make test installs it as root): apt-get install chromium")
    return chromium


def _cmdline(process: psutil.Process) -> str:
    """A process's command line, empty once it is gone."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


async def _handshake_status(ws_url: str, headers: dict[str, str]) -> int:
    """The HTTP status serve-web answers a websocket handshake with (101 when it lets the client in)."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(ws_url, headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=5)):
                return 101
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status


async def _visit_foreign_page(chromium: str, web_console: WebConsole) -> dict:
    """Serve FOREIGN_PAGE from another loopback port, open it in Chromium, and return what its websocket saw."""
    with_token = f"{web_console.ws_url}&token={web_console.token}"
    html = FOREIGN_PAGE.replace("WS_URL", json.dumps(with_token))

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    foreign = web.Application()
    foreign.router.add_get("/", page)
    runner = web.AppRunner(foreign)
    await runner.setup()
    port = free_port()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        async with open_page(chromium, f"http://127.0.0.1:{port}/", web_console.scratch / "foreign-profile",
                             web_console.scratch / "foreign-chromium.log") as page:  # fmt: skip
            await page.wait_for_value("window.seen && window.seen.closed", 15)
            await asyncio.sleep(0.5)  # a message after the close event would still be counted
            return await page.evaluate("window.seen")
    finally:
        await runner.cleanup()


async def _browser_screen(ws_url: str, origin: str, wanted: str, deadline_s: float) -> str:
    """What the console sent to a browser-like websocket client, escape codes removed, until `wanted` shows."""
    text = ""
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, headers={"Origin": origin}) as ws:
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
