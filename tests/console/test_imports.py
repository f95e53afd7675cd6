"""The console starts light: importing the CLI or the app loads no torch, numpy, matplotlib or CuTe DSL (the
import-linter contract holds the UI modules to it; `console.cli` imports them only inside a handler that runs a
soak, a report or a kernel bench, which grimp would count, so this test holds it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runners.run.paths import PROJECT_ROOT

HEAVY = ("torch", "numpy", "matplotlib", "cutlass")


@pytest.mark.parametrize("module", ["console.cli", "console.app"])
def test_importing_the_console_loads_no_heavy_library(module: str) -> None:
    code = f"import json, sys, {module}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert module.split(".")[0] in loaded and "rich" in loaded
    assert not loaded & set(HEAVY), f"{module} loads {sorted(loaded & set(HEAVY))}"
