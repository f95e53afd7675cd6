"""`incident.slot`: where the runner keeps the one incident nothing else can hold, its run directory's disk full.

When the disk under a run directory fills (ENOSPC), state.json, events.jsonl and runner.log can no longer be
written: the run would read as a runner "gone without ending the run", and the summary after a resume would not
name the cause. So the slot is allocated at its full size (SLOT_BYTES of spaces, written and fsynced) when the run
directory is made and at every runner start, and the runner writes the incident into it in place: an overwrite of
blocks the file already has needs no new ones. Readers (the run's status, the console, the next session, which
turns it into a `run_dir_incident` event and blanks the slot) take a blank slot as no incident.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from runners.run.rundir import RunDir

SLOT_NAME = "incident.slot"
SLOT_BYTES = 4096
REASON_CHARS = 3000  # what fits in the slot with its other fields, as UTF-8 of up to 4096 bytes


def prepare_slot(run: RunDir) -> None:
    """Allocate the slot at its full size (blank) unless it already is; raises OSError when it cannot be."""
    path = run.root / SLOT_NAME
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size == SLOT_BYTES:
            return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b" " * (SLOT_BYTES - 1) + b"\n", 0)
        os.ftruncate(fd, SLOT_BYTES)
        os.fsync(fd)
    finally:
        os.close(fd)


def record_incident(run: RunDir, reason: str, step: dict | None) -> bool:
    """Write the incident into the allocated slot in place (fsynced); False when there is no slot to write to."""
    body = {"kind": "run_dir_unwritable", "reason": reason[:REASON_CHARS], "step": step, "t": time.time()}
    data = json.dumps(body, ensure_ascii=True).encode()
    if len(data) >= SLOT_BYTES:  # a step dict cannot make it so long; the reason is already cut
        body["reason"] = reason[:200]
        data = json.dumps(body, ensure_ascii=True).encode()
    try:
        fd = os.open(run.root / SLOT_NAME, os.O_WRONLY)
    except OSError:
        return False
    try:
        if os.fstat(fd).st_size != SLOT_BYTES:
            return False  # never grow the file: that needs blocks the full disk does not have
        os.pwrite(fd, data.ljust(SLOT_BYTES - 1) + b"\n", 0)
        os.fsync(fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def read_incident(run: RunDir) -> dict | None:
    """The incident the slot holds (None: blank, missing, or unreadable)."""
    try:
        text = (run.root / SLOT_NAME).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text:
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body if isinstance(body, dict) and isinstance(body.get("reason"), str) else None


def clear_incident(run: RunDir) -> None:
    """Blank the slot in place once its incident is kept elsewhere (an event of the next session)."""
    with contextlib.suppress(OSError):
        fd = os.open(run.root / SLOT_NAME, os.O_WRONLY)
        try:
            os.pwrite(fd, b" " * (SLOT_BYTES - 1) + b"\n", 0)
            os.fsync(fd)
        finally:
            os.close(fd)


def incident_text(incident: dict) -> str:
    """The incident for people: `the run directory could not be written (… No space left on device …)`."""
    step = incident.get("step")
    where = ""
    if isinstance(step, dict):  # the ledger's current step: {"arm", "mode", "phase", "rep"}
        where = f" during {step.get('arm')}/{step.get('mode')}/{step.get('phase')}/{step.get('rep')}"
    return f"the run directory could not be written{where}: {incident.get('reason')}"
