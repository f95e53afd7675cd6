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
from runners.serve.plugin_inject import PLUGIN_SOURCE, write_injected_plugin
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


# Every plugin of vLLM's group called, as vLLM would if it kept both copies, the injected one last (each would write
# the same <pid>.json): only one may report.
CALL_EVERY_PLUGIN = """
import importlib.metadata as md
for entry in reversed(list(md.entry_points(group="vllm.general_plugins"))):
    entry.load()()
"""


def installed_copy(directory: Path) -> Path:
    """The plugin as `pip install ./vllm_plugin` leaves it in site-packages (module and dist-info)."""
    (directory / "gb10_vllm_plugin").mkdir(parents=True)
    (directory / "gb10_vllm_plugin" / "__init__.py").write_text(PLUGIN_SOURCE.read_text())
    dist = directory / "gb10_vllm_plugin-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gb10-vllm-plugin\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[vllm.general_plugins]\ngb10_env = gb10_vllm_plugin:register\n")
    return directory


@pytest.mark.parametrize("installed", [False, True])
def test_the_injected_copy_reports_only_where_no_installed_copy_does(tmp_path: Path, installed: bool) -> None:
    """Injected alone: it reports. Beside an installed copy (later on sys.path, as site-packages is): it steps
    aside, and the installed copy's report is the only one."""
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / "ENV").write_text(format_sentinel({"GB10_ARM_TAG": "b"}))
    path = [str(write_injected_plugin(tmp_path / "injected"))]
    if installed:
        path.append(str(installed_copy(tmp_path / "site")))
    env = {"GB10_ENV_DIR": str(env_dir), "PYTHONPATH": os.pathsep.join(path), "PATH": os.environ.get("PATH", "")}
    done = subprocess.run([sys.executable, "-S", "-c", CALL_EVERY_PLUGIN], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip  # -S: this venv's own site-packages out of the way
    assert done.returncode == 0, done.stderr
    [report] = [json.loads(p.read_text()) for p in (env_dir / "reports").glob("*.json")]
    assert report["copy"] == ("installed" if installed else "injected")
    assert report["keys"]["GB10_ARM_TAG"] == {"value": "b", "sha256": report["keys"]["GB10_ARM_TAG"]["sha256"],
                                              "source": "sentinel"}  # fmt: skip
