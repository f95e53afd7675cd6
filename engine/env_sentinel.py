"""The `ENV` sentinel file: an arm's environment written into a directory the server can read.

vLLM's EngineCore subprocess can drop `docker -e` variables, so an arm's settings also travel as a
file. Format: one `KEY=VALUE` per line, UTF-8; blank lines and lines starting with `#` are ignored;
no quoting, values run to the end of the line. Writers live in runners; this module is the one
definition of the format.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

SENTINEL_NAME = "ENV"
ENV_DIR_VAR = "GB10_ENV_DIR"
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SentinelError(ValueError):
    """A sentinel file or env mapping that breaks the format."""


def format_sentinel(env: dict[str, str]) -> str:
    """Render `env` in the sentinel format; raises SentinelError for a bad key or a multi-line value."""
    lines = ["# written by gb10-console: the arm's environment, read by the serve target at start"]
    for key, value in env.items():
        if not _KEY.match(key):
            raise SentinelError(f"env key {key!r} is not a valid variable name")
        if "\n" in value or "\r" in value:
            raise SentinelError(f"env value of {key} spans lines; the ENV file holds one line per key")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def parse_sentinel(text: str, origin: str = SENTINEL_NAME) -> dict[str, str]:
    """Parse sentinel text into a dict; raises SentinelError naming `origin` and the line."""
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise SentinelError(f"{origin}:{number}: expected KEY=VALUE, got {raw!r}")
        env[key] = value.strip()
    return env


def read_env_dir(env_dir: str | os.PathLike[str] | None) -> tuple[dict[str, str], Path | None]:
    """Read `<env_dir>/ENV`; returns ({}, None) when no directory is given, raises when it is unreadable."""
    if not env_dir:
        return {}, None
    path = Path(env_dir) / SENTINEL_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SentinelError(f"{path}: no ENV sentinel file in the env dir (was --env-dir right?)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SentinelError(f"{path}: cannot read: {exc}") from None
    return parse_sentinel(text, str(path)), path
