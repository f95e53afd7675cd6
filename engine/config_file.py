"""Load a TOML file into a pydantic model, with errors that name the file, the line and the field."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

M = TypeVar("M", bound=BaseModel)


class ConfigFileError(Exception):
    """A config or plan file that cannot be used; `str()` is a message for people."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


def field_path(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as `arms[1].env.CUTE_WO_SPLIT`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def strip_union_tags(data: object, loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Drop the tags pydantic adds for unions (`phases[0].sharegpt.x` -> `phases[0].x`, `gpus.int` -> `gpus`).

    A string part is a tag when the data at that point is a table without such a key and either
    the location goes on past it or the table holds it as a value (its `kind = "sharegpt"`).
    """
    out: list[int | str] = []
    node = data
    for i, part in enumerate(loc):
        if (
            isinstance(node, dict)
            and isinstance(part, str)
            and part not in node
            and (i + 1 < len(loc) or part in node.values())
        ):
            continue
        if isinstance(node, (str, int, float, bool)) and isinstance(part, str):
            continue  # a union member's tag under a scalar value (`gpus.int`)
        out.append(part)
        if isinstance(node, dict) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def locate_line(text: str, loc: tuple[int | str, ...]) -> int | None:
    """Best-effort 1-based line of the TOML key or table that `loc` points at; None when not found.

    Walks tables (`[serve]`), arrays of tables (`[[arms]]`, the n-th occurrence) and keys in order, so
    `("arms", 1, "env")` finds the `env` key inside the second `[[arms]]` block.
    """
    lines = text.splitlines()
    start, end = 0, len(lines)
    found: int | None = None
    table_prefix = ""
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        if isinstance(part, int):
            i += 1
            continue
        name = f"{table_prefix}{part}"
        index = parts[i + 1] if i + 1 < len(parts) and isinstance(parts[i + 1], int) else None
        header = _find_table(lines, start, end, name, index)
        if header is not None:
            found = header
            start = header + 1
            end = _table_end(lines, start, end)
            table_prefix = f"{name}."
            i += 2 if index is not None else 1
            continue
        key_re = re.compile(rf"^\s*{re.escape(str(part))}\s*=")
        for n in range(start, end):
            if key_re.match(lines[n]):
                return n + 1
        break
    return None if found is None else found + 1


def _find_table(lines: list[str], start: int, end: int, name: str, index: int | None) -> int | None:
    pattern = re.compile(rf"^\s*\[\[?\s*{re.escape(name)}\s*\]\]?\s*(#.*)?$")
    hits = [n for n in range(start, end) if pattern.match(lines[n])]
    if not hits:
        return None
    if index is None:
        return hits[0]
    return hits[index] if index < len(hits) else None


def _table_end(lines: list[str], start: int, end: int) -> int:
    for n in range(start, end):
        if re.match(r"^\s*\[", lines[n]):
            return n
    return end


def read_toml(path: Path) -> tuple[str, dict]:
    """Read and parse a TOML file; raise ConfigFileError naming the file (and line) on failure."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(path, [f"{path}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(path, [f"{path}: cannot read: {exc}"]) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(path, [f"{path}: not valid TOML: {exc}"]) from None


def load_toml_model(path: Path, model: type[M], context: dict | None = None) -> M:
    """Parse `path` as TOML and validate it as `model`, raising ConfigFileError on any problem."""
    text, data = read_toml(path)
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = strip_union_tags(data, tuple(err["loc"]))
            line = locate_line(text, loc)
            where = f"{path}:{line}" if line else str(path)
            problems.append(f"{where}: {field_path(loc)}: {_message(err)}")
        raise ConfigFileError(path, problems) from None


def _message(err: dict) -> str:
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        return "unknown field (check the spelling against docs/architecture.md)"
    if err["type"] == "missing":
        return "required field is missing"
    return msg.removeprefix("Value error, ")
