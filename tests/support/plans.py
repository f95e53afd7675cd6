"""Plan files for tests: one builder (`Plan`, written as TOML) and the plans many tests share.

A test states what its plan is (a serve section, arms, phases) and writes it where the plan's relative paths
resolve; plans that never vary are files under tests/data (`data_plan`). The arms most tests compare are
`split_arms` (the embedded engine at CUTE_WO_SPLIT 1 and 8, named split1/split8) and `ab_arms` (the same two
splits, named a and b).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.project import DATA, ENGINE_CONFIG

TomlValue = str | int | float | bool | Sequence["TomlValue"] | Mapping[str, "TomlValue"]
Table = dict[str, TomlValue]


def toml_value(value: TomlValue) -> str:
    """`value` as TOML: strings and numbers as JSON writes them, booleans lower case, lists as arrays and
    mappings as inline tables (`{ K = V }`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


def toml_table(values: Table) -> str:
    """`key = value` lines."""
    return "".join(f"{key} = {toml_value(value)}\n" for key, value in values.items())


@dataclass
class Plan:
    """A plan file's content: top-level fields, `[serve]`, other sections (`[watchdog]`, `[gates]`), arms and
    phases, in the order a plan is read. `head_toml` (after the top-level fields) and `tail_toml` (at the end)
    are TOML as written, for sections a test writes by hand."""

    name: str
    serve: Table
    arms: list[Table]
    phases: list[Table] = field(default_factory=list)
    top: Table = field(default_factory=dict)
    sections: dict[str, Table] = field(default_factory=dict)
    head_toml: str = ""
    tail_toml: str = ""

    def text(self) -> str:
        """The plan as TOML."""
        parts = [toml_table({"name": self.name, **self.top}), self.head_toml, "\n[serve]\n" + toml_table(self.serve)]
        parts += [f"\n[{name}]\n" + toml_table(values) for name, values in self.sections.items()]
        parts += ["\n[[arms]]\n" + toml_table(arm) for arm in self.arms]
        parts += ["\n[[phases]]\n" + toml_table(phase) for phase in self.phases]
        return "".join(parts) + self.tail_toml

    def write(self, directory: Path, file_name: str = "plan.toml") -> Path:
        """Write the plan to `directory` (made if missing; its relative paths resolve there); its path."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / file_name
        path.write_text(self.text())
        return path


def engine_serve(**fields: TomlValue) -> Table:
    """`[serve]` of the embedded engine (tests/configs' engine-tiny) as a process target, plus `fields`."""
    return {"engine_config": str(ENGINE_CONFIG), **fields}


def split_arms() -> list[Table]:
    """split1 (CUTE_WO_SPLIT "1") and split8 (CUTE_WO_SPLIT 8, a number: the plan takes both spellings)."""
    return [{"name": "split1", "env": {"CUTE_WO_SPLIT": "1"}}, {"name": "split8", "env": {"CUTE_WO_SPLIT": 8}}]


def ab_arms() -> list[Table]:
    """a (CUTE_WO_SPLIT 1) and b (CUTE_WO_SPLIT 8)."""
    return [{"name": "a", "env": {"CUTE_WO_SPLIT": "1"}}, {"name": "b", "env": {"CUTE_WO_SPLIT": "8"}}]


def sharegpt_phase(name: str = "replay", **fields: TomlValue) -> Table:
    """A ShareGPT phase (the built-in conversations unless `dataset` is given) with `fields`."""
    return {"name": name, "kind": "sharegpt", **fields}


def write_plan(directory: Path, requests: int = 6, concurrency: int = 3, max_tokens: int = 12, **serve) -> Path:
    """A two-arm plan (split_arms) with one ShareGPT phase, against the embedded engine unless `serve` gives a
    `command`, written to `directory`."""
    target = {"kind": "process", "ready_timeout_s": 60}
    target |= serve if "command" in serve else engine_serve(**serve)
    phase = sharegpt_phase(requests=requests, concurrency=concurrency, max_tokens=max_tokens, ignore_eos=True,
                           http_timeout_s=30)  # fmt: skip
    return Plan("mini", target, split_arms(), [phase], top={"description": "test plan"}).write(directory)


def phases_toml(phases: Sequence[Table]) -> str:
    """`[[phases]]` tables as TOML (for `fault_plan` and other plans a test writes around them)."""
    return "".join("\n[[phases]]\n" + toml_table(phase) for phase in phases)


def small_phase(name: str, **fields: TomlValue) -> Table:
    """A ShareGPT phase of 4 requests at concurrency 2, 8 tokens each, plus `fields` (a mode, a profile)."""
    return sharegpt_phase(name, **{"requests": 4, "concurrency": 2, "max_tokens": 8, "http_timeout_s": 30, **fields})


def profiled_phase(stop_timeout_s: float) -> Table:
    """A profiled supplementary step whose stop_profile may take `stop_timeout_s`."""
    return small_phase("profiled", mode="supplementary", profile=True, profile_stop_timeout_s=stop_timeout_s)


# A step before, a profiled supplementary step (a 2 s stop deadline) and one after: fault_plan's phases where the
# profiler's incidents are made.
PROFILED_PHASES = phases_toml([small_phase("clean"), profiled_phase(2), small_phase("after", mode="supplementary")])


def fault_plan(tmp_path: Path, faults: list[str], phases: str, extra: str = "", ready_timeout_s: float = 60) -> Path:
    """A one-arm plan (split4) against the embedded engine started with `--test-fault` switches; `phases` and
    `extra` (top level, before `[serve]`) are TOML as written."""
    command = [
        "{python}", "-m", "engine.server", "--config", str(ENGINE_CONFIG), "--host", "{host}", "--port", "{port}",
        "--env-dir", "{env_dir}",
    ]  # fmt: skip
    for fault in faults:
        command += ["--test-fault", fault]
    serve = {"command": command, "ready_timeout_s": ready_timeout_s, "stop_timeout_s": 5}
    arms = [{"name": "split4", "env": {"CUTE_WO_SPLIT": "4"}}]
    return Plan("incident", serve, arms, head_toml=extra, tail_toml=phases).write(tmp_path)


def data_plan(name: str, directory: Path) -> Path:
    """tests/data/`name` (a plan that never varies) copied to `directory` as plan.toml; its path."""
    directory.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(DATA / name, directory / "plan.toml"))


def profiled_vllm_plan(directory: Path) -> Path:
    """write_plan's two arms against a vLLM command profiled with stack tracing on (vLLM's default) and the 60 s
    stop deadline, plus a supplementary phase `profiled` with profile = true (tests/data/profiled-vllm.toml)."""
    return data_plan("profiled-vllm.toml", directory)
