"""File writes a reader can trust: atomic replace with fsync, JSON lines appended whole, tails that wait.

A JSONL file whose last line lost its end (a crash or a full disk mid-write) is never appended to as it is:
the fragment is moved to `<file>.torn` first (`set_aside_torn_tail`), so the next line starts fresh and
every line of the file parses. Appenders hold the file's flock while they write, so the one that sets a
fragment aside never takes another writer's line in flight for one.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

TORN_SUFFIX = ".torn"
RUN_UMASK = 0o027  # run directories 0750, files 0640: evidence people share holds nothing for others by default
UMASK_VAR = "GB10_UMASK"  # octal (e.g. 022 to let others read a run directory); README says so
SCAN_BLOCK = 64 << 10


class RunDirWriteError(OSError):
    """A write into the run directory failed (full disk, permissions); the message names the path."""


def run_umask() -> tuple[int, str | None]:
    """The umask runs are written under: $GB10_UMASK (octal, 000-777) or RUN_UMASK; a warning for a bad value."""
    text = os.environ.get(UMASK_VAR, "").strip()
    if not text:
        return RUN_UMASK, None
    try:
        value = int(text, 8)
    except ValueError:
        value = -1
    if not 0 <= value <= 0o777:
        return RUN_UMASK, f"{UMASK_VAR}={text!r} is not an octal umask (e.g. 022); using {RUN_UMASK:03o}"
    return value, None


def apply_run_umask() -> int:
    """Set this process's umask for writing runs (`run_umask`), saying on stderr when $GB10_UMASK is bad; returns it.

    A process-wide setting on purpose: every file of a run (the runner's, the guard's, the target's) follows it.
    """
    value, warning = run_umask()
    if warning:
        print(f"gb10-console: {warning}", file=sys.stderr)
    os.umask(value)
    return value


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace `path` with `data`: temp file, fsync, os.replace, fsync of the directory.

    A reader sees the old content or the new, never a part. Raises RunDirWriteError naming the path.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RunDirWriteError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc


def write_json_atomic(path: Path, obj: Any) -> None:
    """write_atomic of `obj` as indented JSON."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    """Parse a JSON file; raises FileNotFoundError or ValueError naming the path."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None


@dataclass(frozen=True)
class TornTail:
    """A last line without its newline, moved from a JSONL file to the file's `.torn` sidecar."""

    path: Path
    offset: int  # the byte where the fragment began; the file now ends there
    length: int
    sidecar: Path

    def describe(self) -> str:
        """One sentence: which file, how much, where it went."""
        return (
            f"{self.path.name} ended in a {self.length}-byte line without its newline (from byte {self.offset}); "
            f"that fragment was moved to {self.sidecar.name} so every line of {self.path.name} parses"
        )


def torn_sidecar(path: Path) -> Path:
    """Where the torn last lines of `path` are kept: `<path>.torn`, one JSON record per fragment."""
    return path.with_name(path.name + TORN_SUFFIX)


def _last_line_start(fd: int, size: int) -> int:
    """The offset just after the last newline before `size` (0 when there is none)."""
    end = size
    while end > 0:
        start = max(0, end - SCAN_BLOCK)
        block = os.pread(fd, end - start, start)
        cut = block.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


def set_aside_torn_tail(path: Path) -> TornTail | None:
    """If `path` ends in a partial line, move it to `<path>.torn` and cut the file back to its last newline.

    The sidecar record (`offset`, `length`, `at`, `text`, `base64`: the exact bytes) is fsynced before the file is
    cut, so the fragment is never lost. None when the file is missing, empty or ends in a newline. Holds the
    file's flock, as every JsonlWriter append does. Raises RunDirWriteError naming the file.
    """
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RunDirWriteError(exc.errno, f"cannot open {path}: {exc.strerror or exc}") from exc
    sidecar = torn_sidecar(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return None
        offset = _last_line_start(fd, size)
        fragment = os.pread(fd, size - offset, offset)
        record = {
            "file": path.name,
            "offset": offset,
            "length": len(fragment),
            "at": time.time(),
            "text": fragment.decode("utf-8", errors="replace"),
            "base64": base64.b64encode(fragment).decode("ascii"),
        }
        with open(sidecar, "ab") as fh:
            fh.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            fh.flush()
            os.fsync(fh.fileno())
        os.ftruncate(fd, offset)
        os.fsync(fd)
        return TornTail(path, offset, len(fragment), sidecar)
    except OSError as exc:
        why = exc.strerror or exc
        raise RunDirWriteError(exc.errno, f"cannot set aside the torn last line of {path}: {why}") from exc
    finally:
        os.close(fd)


def set_aside_torn_tails(root: Path) -> list[TornTail]:
    """`set_aside_torn_tail` for every `*.jsonl` file under `root` (a run directory at the start of a session)."""
    found = []
    for path in sorted(root.rglob("*.jsonl")):
        if path.is_file() and not path.is_symlink():
            torn = set_aside_torn_tail(path)
            if torn is not None:
                found.append(torn)
    return found


def torn_records(path: Path) -> list[dict]:
    """The fragments set aside from `path` so far (its `.torn` sidecar's records)."""
    return JsonlTail(torn_sidecar(path)).read_new(max_bytes=None)


class JsonlWriter:
    """Appends one JSON object per line, each written whole under the file's flock.

    A torn last line left by an earlier writer is set aside first (`torn` says so), so the first line
    appended starts on a fresh line instead of completing someone else's fragment.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.torn = set_aside_torn_tail(path)
        self._fh = open(path, "ab")  # noqa: SIM115 - lives as long as the writer

    def append(self, obj: Any, sync: bool = False) -> None:
        """Append `obj`; with `sync`, fsync before returning. Raises RunDirWriteError naming the file."""
        line = orjson.dumps(obj, default=str, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)
        try:
            fd = self._fh.fileno()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._fh.write(line)
                self._fh.flush()
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            if sync:
                os.fsync(fd)
        except OSError as exc:
            raise RunDirWriteError(exc.errno, f"cannot append to {self.path}: {exc.strerror or exc}") from exc

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush, fsync and close."""
        if self._fh.closed:
            return
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise RunDirWriteError(exc.errno, f"cannot finish {self.path}: {exc.strerror or exc}") from exc
        finally:
            with contextlib.suppress(OSError):  # a failed flush was reported above; the descriptor closes anyway
                self._fh.close()


class JsonlTail:
    """Reads complete JSON lines appended since the last call; a trailing partial line waits for its end."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self._partial = b""
        self.bad_lines = 0

    def read_new(self, max_bytes: int | None = 4 << 20) -> list[dict]:
        """Objects from lines completed since the last call (up to `max_bytes` of new data; None: all)."""
        try:
            with open(self.path, "rb") as fh:
                self._follow_cut(os.fstat(fh.fileno()).st_size)
                fh.seek(self.offset)
                data = fh.read() if max_bytes is None else fh.read(max_bytes)
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        out = []
        for raw in lines:
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                self.bad_lines += 1
                continue
            if isinstance(obj, dict):
                out.append(obj)
            else:
                self.bad_lines += 1
        return out

    @property
    def pending(self) -> bytes:
        """The bytes of a last line read so far without its newline (a write in flight, or a torn line)."""
        return self._partial

    def _follow_cut(self, size: int) -> None:
        """The file was cut back (a torn last line set aside, `set_aside_torn_tail`): go on from its new end.

        A fragment this tail holds that was set aside is dropped, even when new lines already grew the file
        past where the tail stood (the sidecar names the fragment's offset), so no line is glued to it.
        """
        whole = self.offset - len(self._partial)
        if self._partial and any(
            r.get("offset") == whole and r.get("length") == len(self._partial) for r in torn_records(self.path)
        ):
            self.offset, self._partial = whole, b""
        elif size < self.offset:  # cut further than this tail knows: carry on from the end, no line twice
            self.offset, self._partial = (whole, b"") if size >= whole else (size, b"")


def read_jsonl(path: Path) -> list[dict]:
    """All complete JSON objects in a JSONL file (a torn last line is skipped)."""
    return JsonlTail(path).read_new(max_bytes=None)


def tail_lines(path: Path, lines: int = 20, max_bytes: int = 64 << 10) -> list[str]:
    """The last `lines` lines of a text file (reads at most `max_bytes` from its end)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except FileNotFoundError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]
