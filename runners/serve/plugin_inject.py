"""gb10-vllm-plugin for a container whose image lacks it: a copy the runner writes, mounted read-only.

The copy is the plugin's one source file (vllm_plugin/gb10_vllm_plugin/__init__.py) as the module
`gb10_vllm_plugin_injected`, beside a `gb10_vllm_plugin_injected-<version>.dist-info` whose entry_points.txt
names it under `vllm.general_plugins` with the installed plugin's entry-point name (`gb10_env`): a
`VLLM_PLUGINS` filter treats both copies alike. Its own distribution and module names keep it from shadowing
an image's installed copy (importlib.metadata keeps one distribution per name, the first on sys.path; a
same-named module on PYTHONPATH would replace the image's). The container's PYTHONPATH gets the mount point
appended. Where the image has its own copy, vLLM keeps one plugin per entry-point name (the installed one,
later on sys.path) and the injected `register` steps aside besides, so each process reports once.
"""

from __future__ import annotations

import re
from pathlib import Path

from runners.host.docker_api import DockerError
from runners.run.files import write_atomic
from runners.run.paths import PROJECT_ROOT

PLUGIN_PROJECT = PROJECT_ROOT / "vllm_plugin"
PLUGIN_SOURCE = PLUGIN_PROJECT / "gb10_vllm_plugin" / "__init__.py"
INJECTED_MODULE = "gb10_vllm_plugin_injected"
PLUGIN_GROUP = "vllm.general_plugins"
PYTHONPATH = "PYTHONPATH"
_ENTRY = re.compile(r'^\s*([A-Za-z0-9_.-]+)\s*=\s*"gb10_vllm_plugin:(\w+)"\s*$', re.M)
_VERSION = re.compile(r'^version\s*=\s*"([^"]+)"\s*$', re.M)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DockerError(
            f"serve.inject_plugin: cannot read the vLLM plugin to mount into the container ({exc}); run gb10-console "
            "from its checkout (vllm_plugin/ beside runners/), or set inject_plugin = false in [serve] and install "
            "the plugin into the image",
            lasting=True,
        ) from None


def write_injected_plugin(directory: Path) -> Path:
    """Write the injected copy (module and dist-info) into `directory`, replacing an earlier one; return it.

    DockerError (lasting) when the plugin's source cannot be read: no retry of the run finds it.
    """
    source, project = _read(PLUGIN_SOURCE), _read(PLUGIN_PROJECT / "pyproject.toml")
    entry, version = _ENTRY.search(project), _VERSION.search(project)
    if entry is None or version is None:
        raise DockerError(
            f"serve.inject_plugin: {PLUGIN_PROJECT / 'pyproject.toml'} names no version or no "
            f'`{PLUGIN_GROUP}` entry point "gb10_vllm_plugin:…"; restore it from gb10-console\'s repository',
            lasting=True,
        )
    dist_info = directory / f"{INJECTED_MODULE}-{version.group(1)}.dist-info"
    write_atomic(directory / INJECTED_MODULE / "__init__.py", source)
    write_atomic(
        dist_info / "METADATA",
        f"Metadata-Version: 2.1\nName: {INJECTED_MODULE}\nVersion: {version.group(1)}\n"
        "Summary: gb10-vllm-plugin, mounted by gb10-console's Docker runtime\n",
    )
    write_atomic(
        dist_info / "entry_points.txt", f"[{PLUGIN_GROUP}]\n{entry.group(1)} = {INJECTED_MODULE}:{entry.group(2)}\n"
    )
    write_atomic(dist_info / "top_level.txt", f"{INJECTED_MODULE}\n")
    return directory


def python_path(image_env: list[str], arm_env: dict[str, str], mount: str) -> str:
    """The container's PYTHONPATH: the arm's, else the image's, with `mount` appended (a copy already there
    is left where it is)."""
    image = dict(item.partition("=")[::2] for item in image_env)
    current = arm_env.get(PYTHONPATH, image.get(PYTHONPATH, ""))
    parts = [p for p in current.split(":") if p]
    return ":".join(parts if mount in parts else [*parts, mount])
