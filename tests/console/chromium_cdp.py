"""Headless Chromium driven over the DevTools protocol, for tests of the console's web mode.

The page textual-serve sends draws the terminal with xterm.js on a WebGL or canvas renderer: pixels, no
text. A script injected before the page's own makes every canvas refuse a context, so xterm.js keeps its DOM
renderer, whose rows are text the test can read. Chromium may only resolve 127.0.0.1, so its own background
traffic never leaves the machine; the page's requests are recorded (DevTools Network events), so a test can
check that a page asked for nothing outside it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from engine.deadlines import timeout

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
START_DEADLINE_S = 30.0
CALL_DEADLINE_S = 15.0
DOM_RENDERER_ONLY = "HTMLCanvasElement.prototype.getContext = function () { return null; };"
SCREEN_TEXT = "(document.querySelector('.xterm-rows') || {innerText: ''}).innerText"
LOOPBACK_ONLY = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"


def find_chromium() -> str | None:
    """The Chromium executable on PATH (Debian's `chromium` package), or None."""
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


@dataclass
class Page:
    """One DevTools session on a page target: calls and their answers; of the events, the page's exceptions and
    the URLs it requested (documents, scripts, fonts, websockets), as they arrive while calls wait."""

    ws: aiohttp.ClientWebSocketResponse
    next_id: int = 0
    exceptions: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)

    async def call(self, method: str, **params: Any) -> dict:
        """Send one DevTools command and return its result; fail with the protocol's error if it has one."""
        self.next_id += 1
        ask = self.next_id
        async with timeout(CALL_DEADLINE_S):
            await self.ws.send_json({"id": ask, "method": method, "params": params})
            while True:
                msg = await self.ws.receive_json()
                self._note(msg)
                if msg.get("id") == ask:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg["result"]

    def _note(self, msg: dict) -> None:
        """Keep what an event says about exceptions and requests."""
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            self.exceptions.append(str(params["exceptionDetails"].get("text")))
        elif method == "Network.requestWillBeSent":
            self.requested.append(params["request"]["url"])
        elif method == "Network.webSocketCreated":
            self.requested.append(params["url"])

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def screen_text(self) -> str:
        """The terminal's rows as text, one line per row."""
        return await self.evaluate(SCREEN_TEXT) or ""

    async def wait_for_text(self, wanted: str, deadline_s: float) -> str:
        """Poll the terminal until `wanted` shows or `deadline_s` passes; returns the last screen either way."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        text = await self.screen_text()
        while wanted not in text and loop.time() < end:
            await asyncio.sleep(0.25)
            text = await self.screen_text()
        return text

    async def wait_for_value(self, expression: str, deadline_s: float) -> Any:
        """Poll a JavaScript expression until its value is truthy or `deadline_s` passes; returns its last value."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        value = await self.evaluate(expression)
        while not value and loop.time() < end:
            await asyncio.sleep(0.1)
            value = await self.evaluate(expression)
        return value

    async def type_key(self, char: str) -> None:
        """Type one printable character into the terminal, as a keyboard would."""
        await self.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
        for kind in ("keyDown", "keyUp"):
            await self.call("Input.dispatchKeyEvent", type=kind, key=char, text=char if kind == "keyDown" else "")

    async def screenshot(self, path: Path) -> None:
        """Save what the page shows as a PNG (for a failing test's evidence)."""
        data = await self.call("Page.captureScreenshot", format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(data["data"]))


@contextlib.asynccontextmanager
async def open_page(chromium: str, url: str, profile: Path, log: Path) -> AsyncIterator[Page]:
    """Start headless Chromium on a fresh profile, open `url` with the DOM renderer forced; always stops it."""
    await asyncio.to_thread(profile.mkdir, parents=True, exist_ok=True)
    argv = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--remote-debugging-port=0", f"--user-data-dir={profile}", LOOPBACK_ONLY, "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--window-size=1280,900", "about:blank"]  # fmt: skip
    port_file = profile / "DevToolsActivePort"
    await asyncio.to_thread(port_file.unlink, missing_ok=True)  # a reused profile's port is not this Chromium's
    out = await asyncio.to_thread(log.open, "wb")
    proc: asyncio.subprocess.Process | None = None
    try:
        proc = await asyncio.create_subprocess_exec(chromium, *argv, stdout=out, stderr=asyncio.subprocess.STDOUT,
                                                    stdin=asyncio.subprocess.DEVNULL)  # fmt: skip
        port = await _devtools_port(port_file, proc)
        async with aiohttp.ClientSession() as session:
            async with timeout(CALL_DEADLINE_S), session.get(f"http://127.0.0.1:{port}/json/list") as answer:
                targets = await answer.json()
            target = next(t for t in targets if t["type"] == "page")
            connecting = session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
            ws = await asyncio.wait_for(connecting, CALL_DEADLINE_S)
            async with ws:
                page = Page(ws)
                await page.call("Runtime.enable")
                await page.call("Page.enable")
                await page.call("Network.enable")
                await page.call("Page.addScriptToEvaluateOnNewDocument", source=DOM_RENDERER_ONLY)
                await page.call("Page.navigate", url=url)
                yield page
    finally:
        if proc is not None:
            await _stop(proc)
        out.close()


async def _devtools_port(port_file: Path, proc: asyncio.subprocess.Process) -> int:
    """The DevTools port Chromium writes to its profile once it listens."""
    async with timeout(START_DEADLINE_S):
        while (port := await asyncio.to_thread(_read_port, port_file)) is None:
            if proc.returncode is not None:
                raise RuntimeError(f"chromium exited with {proc.returncode} before listening for DevTools")
            await asyncio.sleep(0.1)
    return port


def _read_port(port_file: Path) -> int | None:
    """The port on the file's first line, or None while Chromium has not written it."""
    try:
        first = port_file.read_text().split()
    except FileNotFoundError:
        return None
    return int(first[0]) if first else None


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after 10 s; always reaps."""
    if proc.returncode is None:
        proc.terminate()
        try:
            async with timeout(10):
                await proc.wait()
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
