"""The torch profiler behind `POST /start_profile` and `POST /stop_profile`, run on the engine thread.

torch's profiler records the thread that started it, so `start`, `on_step` and `stop` all run on the
engine thread (`start` and `stop` as `EngineLoop.call` commands, `on_step` as its step hook). Like
vLLM's `--profiler-config max_iterations`, a profile stops recording by itself after `max_steps`
engine steps; the trace is still written when `stop` is called.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from torch.profiler import ProfilerActivity, profile


class ProfilerConflict(RuntimeError):
    """Start while a profile is open, or stop while none is (HTTP 409)."""


@dataclass(frozen=True)
class ProfileStarted:
    """A profile began recording into `directory`."""

    directory: Path
    max_steps: int


@dataclass(frozen=True)
class ProfileStopped:
    """A profile ended: its Chrome trace and the engine steps it recorded."""

    trace: Path
    steps: int


def trace_path(directory: Path, unix_ms: int) -> Path:
    """Where a profile stopped at `unix_ms` writes its Chrome trace: `<dir>/trace-<unix-ms>.json`."""
    return directory / f"trace-{unix_ms}.json"


class EngineProfiler:
    """One optional torch profile at a time; every method but `__init__` runs on the engine thread."""

    def __init__(self, device: str, max_steps: int) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.max_steps = max_steps
        self._activities = [ProfilerActivity.CPU]
        if device == "cuda":
            self._activities.append(ProfilerActivity.CUDA)
        self._prof: profile | None = None
        self._directory: Path | None = None
        self._steps = 0
        self._recording = False
        self._auto_stop_error: str | None = None

    def start(self, directory: Path) -> ProfileStarted:
        """Begin recording; the trace will go to `directory`. Raises ProfilerConflict when one is open."""
        if self._prof is not None:
            state = "recording" if self._recording else f"stopped by itself after {self._steps} step(s)"
            raise ProfilerConflict(
                f"a profile is already open ({state}, trace directory {self._directory}); "
                "POST /stop_profile to write its trace first"
            )
        prof = profile(activities=self._activities, record_shapes=False, with_stack=False, profile_memory=False)
        prof.start()
        self._prof, self._directory, self._steps = prof, directory, 0
        self._recording, self._auto_stop_error = True, None
        return ProfileStarted(directory, self.max_steps)

    def on_step(self) -> None:
        """Count one engine step; stop recording once `max_steps` steps are in the profile."""
        if not self._recording or self._prof is None:
            return
        self._steps += 1
        if self._steps >= self.max_steps:
            self._recording = False
            try:
                self._prof.stop()
            except Exception as exc:  # the engine must go on; stop() reports it
                self._auto_stop_error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> ProfileStopped:
        """Stop recording (if still on) and write the Chrome trace; the profile is closed even on failure."""
        prof, directory, steps = self._prof, self._directory, self._steps
        if prof is None or directory is None:
            raise ProfilerConflict("no profile is running; POST /start_profile first")
        recording, auto_stop_error = self._recording, self._auto_stop_error
        self._prof, self._directory, self._recording, self._auto_stop_error = None, None, False, None
        if recording:
            prof.stop()
        if auto_stop_error:
            raise RuntimeError(f"the profiler failed to stop after {steps} step(s): {auto_stop_error}")
        path = trace_path(directory, int(time.time() * 1000))
        partial = path.with_name(path.name + ".partial")
        try:
            prof.export_chrome_trace(str(partial))
            os.replace(partial, path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise OSError(f"could not write the trace to {path}: {exc}") from None
        return ProfileStopped(path, steps)
