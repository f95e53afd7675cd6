"""The console under measurement: `RunConsole(run, readonly=True)` on a terminal driver that renders every frame
and drops it, with its folds counted (the message hook) and its frames timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from textual import events as textual_events
from textual.app import ScreenStackError
from textual.drivers.headless_driver import HeadlessDriver
from textual.message import Message

from console.app import RunConsole
from console.run_tail import RunOpened
from runners.run.event_types import ReadEvent
from runners.run.rundir import RunDir

SCREEN_SIZE = (120, 40)
KEY_DEADLINE_S = 5.0  # a key whose screen did not show within this counts as missed
OPEN_DEADLINE_S = 60.0  # the console opens the run and starts folding
DRAIN_DEADLINE_S = 60.0  # after a writer stops, the console folds what is left


@dataclass
class FoldCounter:
    """What the console has folded: events into its RunView, watchdog.jsonl records into its WatchdogView.

    The console's own view objects are wrapped (instance attributes), nothing in console/app.py: the
    RunView arrives in `RunOpened`, which the message hook (`attach`'s `hook`) sees before the console's
    handler runs; the hook is the one place where the bench meets the events the console folds.
    """

    events: int = 0
    records: int = 0

    def attach(self, app: RunConsole) -> Callable[[Message], None]:
        """Count the app's folds; returns the message hook for `run_test`."""
        fold_record = app.watchdog.apply

        def apply_record(record: object) -> None:
            fold_record(record)
            if isinstance(record, dict) and "type" not in record and "floors_gib" not in record:
                self.records += 1  # a watchdog.jsonl line (not an event, not the watchdog.json status)

        app.watchdog.apply = apply_record  # type: ignore[method-assign]

        def hook(message: Message) -> None:
            """The message hook: count every event the RunView of `RunOpened` folds."""
            if isinstance(message, RunOpened):
                view = message.view
                fold_event = view.apply

                def apply_event(event: ReadEvent) -> str | None:
                    line = fold_event(event)
                    self.events += 1
                    return line

                view.apply = apply_event  # type: ignore[method-assign]

        return hook


@dataclass
class FrameLog:
    """Frames the console wrote to its terminal: (perf_counter time, the screen shown)."""

    frames: list[tuple[float, int]] = field(default_factory=list)  # the last 1,000
    count: int = 0  # every frame
    bytes_written: int = 0
    _bytes_at_last_frame: int = 0
    _new_frame: asyncio.Event | None = None

    def wrote(self, n: int) -> None:
        """The driver wrote `n` bytes."""
        self.bytes_written += n

    def displayed(self, screen_id: int) -> None:
        """A display pass ended; it is a frame when it wrote anything."""
        if self.bytes_written > self._bytes_at_last_frame:
            self._bytes_at_last_frame = self.bytes_written
            self.count += 1
            self.frames.append((time.perf_counter(), screen_id))
            del self.frames[:-1000]
            if self._new_frame is not None:
                self._new_frame.set()

    async def next_frame(self, timeout_s: float) -> None:
        """Wait (on the app's loop) for the next frame, at most `timeout_s`."""
        self._new_frame = asyncio.Event()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._new_frame.wait(), timeout_s)

    def first_after(self, t0: float, screen_id: int) -> float | None:
        """When the first frame after `t0` showing `screen_id` was written, or None."""
        return next((t for t, s in self.frames if t > t0 and s == screen_id), None)


class NullTerminalDriver(HeadlessDriver):
    """A terminal of fixed size that takes every frame and drops it: not headless, so Textual renders
    each frame to its escape sequences; no input."""

    frame_log: FrameLog  # set on the per-app subclass

    @property
    def is_headless(self) -> bool:
        """False: frames are rendered and written (here: counted)."""
        return False

    def write(self, data: str) -> None:
        """Count the frame's bytes; nothing reaches a terminal."""
        self.frame_log.wrote(len(data))


class AttachedConsole:
    """`RunConsole(run, readonly=True)` on a NullTerminalDriver, with its folds and frames counted."""

    def __init__(self, run: RunDir) -> None:
        self.app = RunConsole(run, readonly=True)
        self.folds = FoldCounter()
        self.frames = FrameLog()
        self._hook = self.folds.attach(self.app)
        self.app.driver_class = type("BenchDriver", (NullTerminalDriver,), {"frame_log": self.frames})
        self.app.post_display_hook = self._displayed  # type: ignore[method-assign]

    def _displayed(self) -> None:
        with contextlib.suppress(ScreenStackError):  # a last display while the app shuts down
            self.frames.displayed(id(self.app.screen))

    def run_test(self):
        """The app running (as an async context manager yielding a Pilot)."""
        return self.app.run_test(headless=False, size=SCREEN_SIZE, message_hook=self._hook)

    async def until(self, predicate: Callable[[], bool], deadline_s: float, interval_s: float = 0.05) -> bool:
        """Poll `predicate` on the app's loop until true or `deadline_s` passes."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if predicate():
                return True
            await asyncio.sleep(interval_s)
        return bool(predicate())

    async def key_latency_s(self, key: str, screen_shown: Callable[[], bool]) -> float | None:
        """Post `key` as the terminal driver would; seconds until a frame of the screen it brings was written."""
        character = key if len(key) == 1 else None
        message = textual_events.Key(key, character)
        message.set_sender(self.app)
        t0 = time.perf_counter()
        self.app.post_message(message)
        end = time.monotonic() + KEY_DEADLINE_S
        while time.monotonic() < end:
            if screen_shown():
                shown = self.frames.first_after(t0, id(self.app.screen))
                if shown is not None:
                    return shown - t0  # the frame's own time: how long this loop took to see it does not count
            await self.frames.next_frame(0.05)
        return None
