"""Where the project's files are, for tests: the checkout, the tiny engine's config, the shared data sets, and
the files tests read that never vary (tests/data)."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE_CONFIG = ROOT / "configs" / "engine-tiny.toml"
SHARED = ROOT.parent / "shared"
DATA = ROOT / "tests" / "data"


def copy_data(name: str, directory: Path) -> Path:
    """tests/data/`name` (a file, or a folder's files) copied into `directory`, where a plan's relative paths
    resolve; `directory`."""
    source = DATA / name
    if source.is_dir():
        shutil.copytree(source, directory, dirs_exist_ok=True)
    else:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, directory / source.name)
    return directory
