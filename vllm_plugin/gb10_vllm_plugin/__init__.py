"""gb10-console's vLLM plugin: the arm's ENV sentinel in every vLLM process, and a report of what each one runs.

vLLM calls `register` (entry point group `vllm.general_plugins`) in its API server, its EngineCore and
its workers. There it:
1. finds the arm's ENV sentinel: `$GB10_ENV_DIR/ENV`, else `/gb10/env/ENV`, where gb10-console's Docker
   runtime mounts it (a container's EngineCore may not see the variable);
2. sets every key of the sentinel that the process's environment lacks: the real environment wins;
3. writes `<env dir>/reports/<pid>.json`: pid, parent pid, process title, role (from where vLLM loaded
   its plugins: EngineCore, worker, API server), the vLLM version and, for each of the sentinel's
   keys, what this process now has (the value, its sha256, and where it came from). gb10-console reads
   these after readiness and verifies the arm in an EngineCore or worker process.

vLLM loads its general plugins once per process, and a forked child inherits "already loaded"; so
`register` also wraps `vllm.plugins.load_general_plugins`, which EngineCore and the workers import when
they call it, and a process with a new pid reports for itself.

Two copies, one report. gb10-console's Docker runtime also mounts this file into a container as the module
`gb10_vllm_plugin_injected` (its own distribution, same entry-point name `gb10_env`, on PYTHONPATH), so an
image without the plugin still proves its arm. An image with the plugin installed keeps its own: vLLM keeps
one plugin per entry-point name, and the injected copy's `register` steps aside when an installed copy's
entry point exists. Each report names the copy that wrote it (`copy`: installed or injected).

The sentinel format is engine/env_sentinel.py's (one KEY=VALUE a line, `#` comments). This package is
installed beside vLLM with no dependencies, so it parses the format itself; gb10-console's tests check
that the two agree. Nothing here may break vLLM: every failure is logged and the process goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import time

ENV_DIR_VAR = "GB10_ENV_DIR"
DOCKER_ENV_DIR = "/gb10/env"
SENTINEL_NAME = "ENV"
REPORTS_DIR = "reports"
PLUGIN_VERSION = "0.1.0"
PLUGIN_GROUP = "vllm.general_plugins"
INSTALLED_MODULE = "gb10_vllm_plugin"  # the injected copy runs under another module name
# Values of keys named like secrets are never written (their sha256 is): as runners/run/redact.py.
_SECRET = re.compile(r"(TOKEN|SECRET|PASSW(OR)?D|API[-_]?KEY|ACCESS[-_]?KEY|PRIVATE[-_]?KEY|CREDENTIAL|AUTH)", re.I)
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Where vLLM loaded its plugins from says which process this is.
_ROLES = (
    ("vllm.v1.engine.core", "EngineCore"),
    ("vllm.v1.worker", "worker"),
    ("vllm.v1.executor", "worker"),
    ("vllm.worker", "worker"),
    ("vllm.engine.arg_utils", "api_server"),
    ("vllm.entrypoints", "api_server"),
)
_SKIP_FRAMES = ("gb10_vllm_plugin", "vllm.plugins", "importlib")

logger = logging.getLogger("gb10_vllm_plugin")
_state: dict = {"pid": None, "calls": [], "from_sentinel": set()}


def find_env_dir() -> str | None:
    """The arm's env directory: $GB10_ENV_DIR, else the Docker runtime's mount if it exists, else None."""
    named = os.environ.get(ENV_DIR_VAR)
    if named:
        return named
    return DOCKER_ENV_DIR if os.path.isdir(DOCKER_ENV_DIR) else None


def parse_sentinel(text: str) -> dict[str, str]:
    """KEY=VALUE lines into a dict (blank and `#` lines skipped); ValueError naming a malformed line."""
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise ValueError(f"line {number}: expected KEY=VALUE, got {raw!r}")
        env[key] = value.strip()
    return env


def apply_sentinel(directory: str) -> tuple[dict[str, str], str | None]:
    """Set the sentinel's keys the environment lacks; (the sentinel's env, an error or None)."""
    path = os.path.join(directory, SENTINEL_NAME)
    try:
        with open(path, encoding="utf-8") as fh:
            sentinel = parse_sentinel(fh.read())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return {}, f"{path}: {exc}"
    for key, value in sentinel.items():
        if key not in os.environ:
            os.environ[key] = value
            _state["from_sentinel"].add(key)
    return sentinel, None


def _call_site() -> str:
    """module:function of the code that made vLLM load its plugins (frames of the loader skipped)."""
    frame = sys._getframe(1)
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if not module.startswith(_SKIP_FRAMES):
            code = frame.f_code
            return f"{module}:{getattr(code, 'co_qualname', code.co_name)}"
        frame = frame.f_back
    return "?"


def _roles(calls: list[str]) -> list[str]:
    roles = []
    for call in calls:
        role = next((r for prefix, r in _ROLES if call.startswith(prefix)), None)
        if role and role not in roles:
            roles.append(role)
    return roles


def _title() -> str | None:
    try:
        import setproctitle  # vLLM names its processes with it: VLLM::EngineCore
    except ImportError:
        return None
    try:
        return str(setproctitle.getproctitle())
    except Exception:  # a broken title is no reason to fail vLLM
        return None


def _vllm_version() -> str | None:
    try:
        from vllm.version import __version__
    except Exception:
        return None
    return str(__version__)


def _key_report(key: str, sentinel_value: str) -> dict:
    value = os.environ.get(key)
    if value is None:
        return {"value": None, "sha256": None, "source": "absent"}
    source = "sentinel" if key in _state["from_sentinel"] and value == sentinel_value else "env"
    digest = hashlib.sha256(value.encode()).hexdigest()
    return {"value": None if _SECRET.search(key) else value, "sha256": digest, "source": source}


def build_report(directory: str, sentinel: dict[str, str], error: str | None, calls: list[str]) -> dict:
    """What this process runs for the arm's keys, as `reports/<pid>.json` holds it."""
    return {
        "plugin": f"gb10-vllm-plugin {PLUGIN_VERSION}",
        "copy": _copy(),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "title": _title(),
        "roles": _roles(calls),
        "calls": list(calls),
        "vllm_version": _vllm_version(),
        "env_dir": directory,
        "sentinel_error": error,
        "keys": {key: _key_report(key, value) for key, value in sentinel.items()},
        "written_at": time.time(),
    }


def _write(directory: str, report: dict) -> None:
    folder = os.path.join(directory, REPORTS_DIR)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{report['pid']}.json")
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def report_process(call: str) -> None:
    """Apply the sentinel and (re)write this process's report, adding `call` to where plugins were loaded."""
    directory = find_env_dir()
    if directory is None:
        return
    if _state["pid"] != os.getpid():  # a new process (or a forked child): its own report
        _state["pid"], _state["calls"] = os.getpid(), []
    if call not in _state["calls"]:
        _state["calls"].append(call)
    sentinel, error = apply_sentinel(directory)
    if error:
        logger.warning("gb10-vllm-plugin: cannot read the arm's ENV sentinel: %s", error)
    try:
        _write(directory, build_report(directory, sentinel, error, _state["calls"]))
    except OSError as exc:
        logger.warning("gb10-vllm-plugin: cannot write the env report into %s: %s", directory, exc)


def _wrap_loader() -> None:
    """Report from every process that asks vLLM to load its plugins, forked children included."""
    try:
        import vllm.plugins as plugins
    except Exception:
        return
    original = plugins.load_general_plugins
    if getattr(original, "_gb10_wrapped", False):
        return

    def load_general_plugins():
        report_process(_call_site())
        return original()

    load_general_plugins._gb10_wrapped = True  # type: ignore[attr-defined]
    load_general_plugins.__doc__ = original.__doc__
    plugins.load_general_plugins = load_general_plugins


def _copy() -> str:
    return "installed" if __name__ == INSTALLED_MODULE else "injected"


def installed_copy_present() -> bool:
    """True when an installed copy's entry point (module gb10_vllm_plugin) is in vLLM's plugin group."""
    from importlib.metadata import entry_points

    return any(ep.value.split(":")[0].strip() == INSTALLED_MODULE for ep in entry_points(group=PLUGIN_GROUP))


def register() -> None:
    """vLLM's entry point: load the arm's env into this process, report it, and follow forked children (the injected
    copy steps aside where an installed copy exists)."""
    try:
        if _copy() == "injected" and installed_copy_present():
            logger.info("gb10-vllm-plugin: the installed copy reports; the injected one steps aside")
            return
        report_process(_call_site())
        _wrap_loader()
    except Exception:  # never take vLLM down
        logger.exception("gb10-vllm-plugin failed; the arm's env is not reported from this process")
