"""gb10-vllm-plugin without vLLM: its sentinel parser agrees with the engine's, the real environment wins, and a
forked child (vLLM's EngineCore is one) reports for itself with its role.

A stand-in `vllm` package (written per test) has what the plugin touches: `vllm.plugins.load_general_plugins`
with vLLM's once-per-process guard, a version, and an EngineCore that loads plugins in its constructor.
The real vLLM is in tests/vllm.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.env_sentinel import SentinelError, format_sentinel, parse_sentinel
from tests.support.project import ROOT

sys.path.insert(0, str(ROOT / "vllm_plugin"))
import gb10_vllm_plugin as plugin

FAKE_VLLM = {
    "vllm/__init__.py": "",
    "vllm/version.py": "__version__ = '0.0.test'\n",
    "vllm/plugins/__init__.py": textwrap.dedent(
        """
        plugins_loaded = False

        def load_general_plugins():
            global plugins_loaded
            if plugins_loaded:
                return
            plugins_loaded = True
            import gb10_vllm_plugin
            gb10_vllm_plugin.register()
        """
    ),
    "vllm/entrypoints/__init__.py": "",
    "vllm/entrypoints/api_server.py": (
        "def main():\n    from vllm.plugins import load_general_plugins\n    load_general_plugins()\n"
    ),
    "vllm/v1/__init__.py": "",
    "vllm/v1/engine/__init__.py": "",
    "vllm/v1/engine/core.py": textwrap.dedent(
        """
        class EngineCore:
            def __init__(self):
                from vllm.plugins import load_general_plugins
                load_general_plugins()
        """
    ),
}

SCRIPT = """
import os, sys
from vllm.entrypoints.api_server import main
main()
print("A_REAL=" + os.environ["A_REAL"], "B_FILE=" + os.environ["B_FILE"])
pid = os.fork()
if pid == 0:
    from vllm.v1.engine.core import EngineCore
    EngineCore()
    os._exit(0)
os.waitpid(pid, 0)
"""


@pytest.mark.parametrize(
    "env",
    [{}, {"CUTE_WO_SPLIT": "8"}, {"A": "x=y", "B": "", "HF_TOKEN": "s3cr3t", "C": " spaced "}],
)
def test_the_plugin_reads_what_the_engine_writes(env: dict[str, str]) -> None:
    text = format_sentinel(env)
    assert plugin.parse_sentinel(text) == parse_sentinel(text)


def test_the_plugin_refuses_the_lines_the_engine_refuses() -> None:
    for bad in ("NOEQUALS\n", "1BAD=x\n", "=x\n"):
        with pytest.raises(SentinelError):
            parse_sentinel(bad)
        with pytest.raises(ValueError, match="line 1"):
            plugin.parse_sentinel(bad)


def test_every_process_reports_for_itself_and_the_real_environment_wins(tmp_path: Path) -> None:
    for name, text in FAKE_VLLM.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / "ENV").write_text(format_sentinel({"A_REAL": "from-file", "B_FILE": "from-file", "HF_TOKEN": "t0k"}))
    env = {**os.environ, "GB10_ENV_DIR": str(env_dir), "A_REAL": "from-env",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "vllm_plugin")])}  # fmt: skip
    env.pop("B_FILE", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "A_REAL=from-env B_FILE=from-file" in done.stdout  # set if absent: the real environment wins
    reports = [json.loads(p.read_text()) for p in sorted((env_dir / "reports").glob("*.json"))]
    by_role = {tuple(r["roles"]): r for r in reports}
    assert set(by_role) == {("api_server",), ("EngineCore",)}, reports  # the fork reported despite vLLM's guard
    api, core = by_role[("api_server",)], by_role[("EngineCore",)]
    assert core["ppid"] == api["pid"] and core["vllm_version"] == "0.0.test"
    assert core["calls"] == ["vllm.v1.engine.core:EngineCore.__init__"]
    keys = api["keys"]
    assert keys["A_REAL"]["value"] == "from-env" and keys["A_REAL"]["source"] == "env"
    assert keys["B_FILE"]["value"] == "from-file" and keys["B_FILE"]["source"] == "sentinel"
    assert keys["HF_TOKEN"]["value"] is None and len(keys["HF_TOKEN"]["sha256"]) == 64  # a secret: its hash only
    assert core["keys"]["B_FILE"]["value"] == "from-file"


def test_without_an_env_dir_the_plugin_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GB10_ENV_DIR", raising=False)
    if Path(plugin.DOCKER_ENV_DIR).exists():
        pytest.skip(f"{plugin.DOCKER_ENV_DIR} exists on this host")
    assert plugin.find_env_dir() is None
    plugin.register()  # no error, nothing written


def test_an_unreadable_sentinel_is_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GB10_ENV_DIR", str(tmp_path))
    (tmp_path / "ENV").write_text("garbage line\n")
    plugin.report_process("tests:caller")
    report = json.loads((tmp_path / "reports" / f"{os.getpid()}.json").read_text())
    assert "line 1" in report["sentinel_error"] and report["keys"] == {}
