"""File writes a reader can trust: atomic replace with fsync, JSON lines appended whole, tails that wait."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import orjson


class RunDirWriteError(OSError):
    """A write into the run directory failed (full disk, permissions); the message names the path."""


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


class JsonlWriter:
    """Appends one JSON object per line; each line is written whole with a single write call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "ab")  # noqa: SIM115 - lives as long as the writer

    def append(self, obj: Any, sync: bool = False) -> None:
        """Append `obj`; with `sync`, fsync before returning. Raises RunDirWriteError naming the file."""
        line = orjson.dumps(obj, default=str, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)
        try:
            self._fh.write(line)
            self._fh.flush()
            if sync:
                os.fsync(self._fh.fileno())
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
