"""Where the project's own files are."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIGS_DIR = PROJECT_ROOT / "configs"
DEMO_PLAN = CONFIGS_DIR / "demo.toml"


def default_runs_dir() -> Path:
    """`./runs` under the current directory."""
    return Path.cwd() / "runs"
