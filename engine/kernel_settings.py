"""Which kernel variant the engine runs, read from the environment or the ENV sentinel (env wins)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.env_sentinel import read_env_dir
from engine.kernels.wo_split_values import check_wo_split

WO_SPLIT_VAR = "CUTE_WO_SPLIT"
DEFAULT_WO_SPLIT = 1


@dataclass(frozen=True)
class KernelSettings:
    """Effective kernel settings and where each came from ("env", "sentinel" or "default")."""

    wo_split: int
    sources: dict[str, str] = field(default_factory=dict)
    sentinel_path: Path | None = None

    def effective_env(self) -> dict[str, str]:
        """The settings as the environment variables that select them."""
        return {WO_SPLIT_VAR: str(self.wo_split)}


def resolve_kernel_settings(environ: Mapping[str, str], env_dir: str | Path | None) -> KernelSettings:
    """Resolve settings from `environ` first, then `<env_dir>/ENV`, then defaults.

    Raises WoSplitError (a ValueError) naming the source when a value is not allowed, and
    SentinelError when the env dir has no readable ENV file.
    """
    sentinel, sentinel_path = read_env_dir(env_dir)
    if WO_SPLIT_VAR in environ:
        raw, source = environ[WO_SPLIT_VAR], "env"
    elif WO_SPLIT_VAR in sentinel:
        raw, source = sentinel[WO_SPLIT_VAR], "sentinel"
    else:
        raw, source = str(DEFAULT_WO_SPLIT), "default"
    where = f"{WO_SPLIT_VAR} (from {source}{f' {sentinel_path}' if source == 'sentinel' else ''})"
    wo_split = check_wo_split(raw, where)
    return KernelSettings(wo_split=wo_split, sources={WO_SPLIT_VAR: source}, sentinel_path=sentinel_path)
