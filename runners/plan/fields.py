"""Field validators every plan table shares: names that become directories, env maps, sizes, ulimits."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FromEnv(BaseModel):
    """`{ from_env = "NAME" }`: the value is read from the runner's environment when the target starts;
    the plan (and everything written from it) holds only the name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_env: str = Field(pattern=ENV_KEY.pattern)


class HeldValue(BaseModel):
    """`{ redacted = "sha256:…" }`: in a run directory's plan copy, a literal value that was not copied.

    Its value stays in the original plan (run.json's plan_source), where `--resume` reads it again.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    redacted: str = Field(pattern=r"^sha256:[0-9a-f]{12}$")


PlanEnvValue = str | FromEnv | HeldValue


def _env_value(value: object) -> object:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, (dict, FromEnv, HeldValue)):
        return value
    raise ValueError(f'env values must be strings, numbers or {{ from_env = "NAME" }}, got {type(value).__name__}')


EnvValue = Annotated[PlanEnvValue, BeforeValidator(_env_value)]


def check_env(env: dict[str, PlanEnvValue]) -> dict[str, PlanEnvValue]:
    """An env map whose keys are variable names and whose values fit on one line (the ENV sentinel's format)."""
    for key, value in env.items():
        if not ENV_KEY.match(key):
            raise ValueError(f"{key!r} is not a valid environment variable name")
        if isinstance(value, str) and "\n" in value:
            raise ValueError(f"the value of {key} spans lines")
    return env


def check_slug(value: str) -> str:
    """A name that is safe as a directory name: 1-64 letters, digits, '.', '_' or '-'."""
    if not SLUG.match(value):
        raise ValueError(
            f"{value!r} must be 1-64 characters of letters, digits, '.', '_' or '-' (it names directories)"
        )
    return value


SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
MOUNT = re.compile(r"^([^:]+):(/[^:]*)(?::(ro|rw))?$")


def parse_size(value: str | int) -> int:
    """`"16g"`, `"512m"`, `"1.5GiB"` or a byte count -> bytes (powers of 1024, as Docker reads them)."""
    if isinstance(value, int):
        return value
    match = SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size; write it like 16g, 512m or a byte count")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** "_kmgt".index(unit or "_"))


def ulimit_pair(name: str, value: int | str) -> tuple[int, int]:
    """(soft, hard) from `1024`, `"1024:4096"` or -1 (unlimited), as `docker run --ulimit` reads them."""
    if not re.match(r"^[a-z]+$", name):
        raise ValueError(f"{name!r} is not a ulimit name (nofile, nproc, memlock, stack, core, ...)")
    parts = [value] if isinstance(value, int) else str(value).split(":")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        raise ValueError(f"ulimit {name} = {value!r}: write a number, SOFT:HARD or -1") from None
    if len(numbers) not in (1, 2):
        raise ValueError(f"ulimit {name} = {value!r}: write a number, SOFT:HARD or -1")
    return numbers[0], numbers[-1]


def check_gpus(value: object) -> object:
    """`"all"`, `"none"` or a GPU count of at least 1."""
    if isinstance(value, bool) or not (value in ("all", "none") or (isinstance(value, int) and value >= 1)):
        raise ValueError(f'{value!r}: write "all", "none" or a GPU count of at least 1')
    return value


def check_size(value: str | int | None) -> str | int | None:
    """A size `parse_size` reads (or None)."""
    if value is not None:
        parse_size(value)
    return value
