"""A step's region-timing dump: ask the target for one through a sentinel file, read it back, decode it.

A phase's `region_timings` names two files (absolute host paths, or under the serve target's
runner-owned `{profile_dir}`): `trigger`, which the runner creates after the profiler start and before
the replay (as nvllm's `/tmp/.dump_region_timings`: a target built with region timers dumps its
per-CTA tick buffer when it sees it), and `output`, the `.npy` the target writes. Before the replay a
stale output is removed (or, when it cannot be, remembered so that it is never read as this step's).
After the replay and the profiler stop the runner waits, at most `wait_s` (an abort ends the wait),
for the output to exist and its size and mtime to stay the same across a poll (in a profiled step
the profiler's trace collection moves what appeared in `{profile_dir}` into the step's `profile/`, so
an output under `{profile_dir}` is looked for there too); copies it into the step directory as
`region_timings.npy` (atomically), removes the trigger and the source, and decodes it
(`runners/evidence/region_decode.py`). File I/O and the decode run in threads, never on the loop.

phase.json `region_timings` is None for a phase without them, else: `status` captured | missing (no
output in time) | unreadable (not an int64 [ctas, regions, 2] `.npy`, over 256 MiB, or it could not be read) |
unavailable (the paths cannot be resolved or the trigger cannot be made), `reason`, `file`, `source`,
`trigger`, and when captured `unit`, `calibration`, `regions`, `shape`, `active_ctas`. Events:
`region_timings_captured`, `region_timings_missing` (any other status). Never a reason to fail a step.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from pathlib import Path

import numpy as np
import torch

from engine.kernels.region_timing import RegionTimingError
from runners.evidence.region_decode import region_table
from runners.evidence.region_table import CAPTURED, MISSING, UNAVAILABLE, UNREADABLE
from runners.plan.phases import PROFILE_DIR, PhaseBase, RegionTimingSpec
from runners.plan.steps import StepKey
from runners.run.event_types import RegionTimingsCaptured, RegionTimingsMissing
from runners.run.events import EventLog
from runners.run.files import write_atomic

DUMP_FILE = "region_timings.npy"
TRACE_DIR = "profile"  # the step's trace directory: the profiler moves what appeared in {profile_dir} there
MAX_DUMP_BYTES = 256 << 20  # decoded in memory; on a GB10 host memory is the GPU's
POLL_S = 0.1

Signature = tuple[int, int, int]  # (inode, size, mtime ns)


def resolve(template: str, profile_dir: Path | None) -> Path | None:
    """The host path of a `trigger`/`output` setting; None when it needs a profile_dir the target lacks."""
    if template.startswith(PROFILE_DIR + "/"):
        return None if profile_dir is None else profile_dir / template[len(PROFILE_DIR) + 1 :]
    return Path(template)


def _signature(path: Path) -> Signature | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def decode_dump(data: bytes, spec: RegionTimingSpec, kernels: list[dict] | None) -> dict:
    """The decoded table of a dump's bytes (`region_table`); RegionTimingError when it is not a usable buffer."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise RegionTimingError(f"not a numpy .npy array: {exc}") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise RegionTimingError("not a single .npy array (an .npz archive?)")
    if array.dtype.kind != "i" or array.dtype.itemsize != 8:
        raise RegionTimingError(f"region timing buffers hold int64 ticks, got {array.dtype}")
    buffer = torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))
    return region_table(buffer, spec.regions, spec.active_ctas, spec.tick_ns, spec.kernel, kernels)


class RegionDump:
    """One step's region-timing dump: `arm` before the replay, `collect` after it (no-ops without a spec)."""

    def __init__(self, spec: RegionTimingSpec | None, profile_dir: Path | None, step_dir: Path,
                 events: EventLog, step: StepKey) -> None:  # fmt: skip
        self.spec, self.step_dir, self.events, self.step = spec, step_dir, events, step
        self.trigger = self.output = None
        self.unavailable: str | None = None
        self.stale: Signature | None = None  # an output from before the step that could not be removed
        self.stale_note: str | None = None
        self.moved: Path | None = None  # where a profiled step's trace collection moves an output under {profile_dir}
        self.found: Path | None = None  # where the output was found
        if spec is None:
            return
        self.trigger, self.output = resolve(spec.trigger, profile_dir), resolve(spec.output, profile_dir)
        if spec.output.startswith(PROFILE_DIR + "/"):
            self.moved = step_dir / TRACE_DIR / spec.output[len(PROFILE_DIR) + 1 :]
        if self.trigger is None or self.output is None:
            self.unavailable = (
                f"{PROFILE_DIR} cannot be resolved: the serve target has no runner-owned profile directory "
                "(an external target, or a runtime without one); give absolute host paths instead"
            )

    @classmethod
    def for_step(cls, phase: PhaseBase, runtime: object, step_dir: Path, events: EventLog, step: StepKey) -> RegionDump:
        """The dump the phase asks for; `runtime.profile_dir` (host path, None when it has none) resolves paths."""
        profile_dir = getattr(runtime, "profile_dir", None)
        return cls(phase.region_timings, Path(profile_dir) if profile_dir else None, step_dir, events, step)

    async def arm(self) -> None:
        """Remove a stale output and create the trigger (before the replay)."""
        if self.spec is None or self.unavailable is not None:
            return
        self.unavailable = await asyncio.to_thread(self._arm)

    def _arm(self) -> str | None:
        assert self.trigger is not None and self.output is not None
        try:
            self.output.unlink(missing_ok=True)
        except OSError as exc:
            self.stale = _signature(self.output)
            self.stale_note = f"a stale {self.output} could not be removed ({exc.strerror or exc})"
        assert self.spec is not None
        try:
            for template, path in ((self.spec.trigger, self.trigger), (self.spec.output, self.output)):
                if template.startswith(PROFILE_DIR + "/"):  # under the runner's own directory: make its folders
                    path.parent.mkdir(parents=True, exist_ok=True)
            self.trigger.touch()
        except OSError as exc:
            return f"cannot create the trigger {self.trigger}: {exc.strerror or exc}"
        return None

    async def discard(self) -> None:
        """Remove the trigger of a step that ends without collecting (a later target must not dump on it)."""
        if self.spec is not None and self.unavailable is None and self.trigger is not None:
            await asyncio.to_thread(_remove, self.trigger)

    async def collect(
        self,
        kernels: list[dict] | None = None,
        abort: asyncio.Event | None = None,
        ended: str | None = None,
        aborted: bool = False,
        profile_lost: bool = False,
    ) -> dict | None:
        """phase.json `region_timings` (None without a spec), after its event.

        `kernels`: the step's profiler table (`{"name", "n_calls", "mean_us"}`) to calibrate against.
        A target that `ended`, an `aborted` replay or a target killed over its profiler's stop (`profile_lost`)
        gets one look at the output instead of the wait.
        """
        if self.spec is None:
            return None
        spec = self.spec
        base = {"file": None, "source": str(self.output) if self.output else spec.output,
                "trigger": str(self.trigger) if self.trigger else spec.trigger}  # fmt: skip
        if self.unavailable is not None:
            return self._emit(base | {"status": UNAVAILABLE, "reason": self.unavailable})
        no_wait = (
            f"the serve target {ended} during the step" if ended
            else "the step was aborted" if aborted
            else "the target was killed over its profiler's stop" if profile_lost
            else None
        )  # fmt: skip
        try:
            found, why = await self._wait(0.0 if no_wait else spec.wait_s, abort)
        finally:
            await asyncio.to_thread(_remove, self.trigger)  # type: ignore[arg-type]
        if not found:
            reason = f"{why} ({no_wait}: not waited for)" if no_wait else why
            note = f"{reason}; {self.stale_note}" if self.stale_note else reason
            return self._emit(base | {"status": MISSING, "reason": note})
        return self._emit(base | {"source": str(self.found)} | await asyncio.to_thread(self._read, kernels))

    async def _wait(self, wait_s: float, abort: asyncio.Event | None) -> tuple[bool, str]:
        """(True, "") once the output exists, is new and kept its size and mtime across a poll; else why not."""
        assert self.output is not None
        deadline = time.monotonic() + wait_s
        last: Signature | None = None
        while True:
            self.found, now = await asyncio.to_thread(self._look)
            fresh = now is not None and now != self.stale and now[1] > 0
            if fresh and (now == last or wait_s == 0):
                return True, ""
            last = now if fresh else None
            left = deadline - time.monotonic()
            if left <= 0:
                if last is not None:
                    return False, f"{self.output} was still changing {wait_s:g} s after the replay"
                if now is not None and now == self.stale:
                    return False, f"{self.output} is still the stale file from before the step"
                hint = "is the target's region timing on, and does it watch the trigger"
                return False, f"no {self.output} within {wait_s:g} s after the replay ({hint} {self.trigger}?)"
            if abort is not None and abort.is_set():
                return False, "an abort was requested while waiting for the dump"
            await _sleep_or(abort, min(POLL_S, left))

    def _look(self) -> tuple[Path | None, Signature | None]:
        """The output's path and signature: where the target writes it, else where a trace collection moved it."""
        for path in (self.output, self.moved):
            signature = _signature(path) if path is not None else None
            if signature is not None:
                return path, signature
        return None, None

    def _read(self, kernels: list[dict] | None) -> dict:
        """Copy the output into the step directory (atomically), remove the source, decode the copy's bytes."""
        assert self.found is not None and self.spec is not None
        found = self.found
        try:
            with open(found, "rb") as fh:
                data = fh.read(MAX_DUMP_BYTES + 1)
        except OSError as exc:
            return {"status": UNREADABLE, "reason": f"cannot read {found}: {exc.strerror or exc}"}
        if len(data) > MAX_DUMP_BYTES:
            return {"status": UNREADABLE, "reason": f"{found} is over the {MAX_DUMP_BYTES >> 20} MiB "
                    "limit for decoding in memory"}  # fmt: skip
        copy = self.step_dir / DUMP_FILE
        write_atomic(copy, data)  # a RunDirWriteError (a full run directory) is the runner's to report
        if found == self.output:
            _remove(found)  # best effort: an output left behind is removed or recognised at the next arm
        try:
            table = decode_dump(data, self.spec, kernels)
        except RegionTimingError as exc:
            return {"status": UNREADABLE, "reason": f"{copy}: {exc}", "file": DUMP_FILE}
        return {"status": CAPTURED, "reason": "", "file": DUMP_FILE, **table}

    def _emit(self, section: dict) -> dict:
        if section["status"] == CAPTURED:
            how = section["calibration"]["how"]
            event = RegionTimingsCaptured(self.step, section["file"], len(section["regions"]), section["unit"], how)
            self.events.emit(event)
        else:
            self.events.emit(RegionTimingsMissing(self.step, section["status"], section["reason"]))
        return section


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


async def _sleep_or(event: asyncio.Event | None, seconds: float) -> None:
    """Sleep `seconds`, or less when `event` is set."""
    if event is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
