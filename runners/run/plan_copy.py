"""The run directory's copy of its plan (plan.toml): the plan as its author wrote it, less the env values it
must not hold, and how `--resume` gets those values back.

Every literal env value that `EnvPolicy` hides (runners/run/redact.py) is replaced in the copy's text by
`{ redacted = "sha256:<12 hex>" }`; the rest of the file (comments, layout, line numbers) is kept. A
`{ from_env = "NAME" }` value is copied as it is: it holds no value. When the copy is loaded for a run
(`restore_held_values`), each held value is read again from the original plan (run.json's plan_source)
and used only when its sha256 prefix matches; otherwise it stays held and pre-flight refuses to start
(`Plan.missing_env_values`). A value whose spelling in the file cannot be replaced (an escaped string, a
boolean) is refused with what to write instead: the copy never carries it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path

import tomllib

from engine.config_file import ConfigFileError, load_toml_model
from runners.plan.fields import HeldValue
from runners.plan.load import LoadedPlan
from runners.plan.model import Plan
from runners.run.redact import env_policy, sha_prefix


class PlanCopyError(Exception):
    """A plan whose secret values cannot be left out of the run directory's copy."""


def _raw_table(raw: dict, field: str) -> dict | None:
    """The TOML table behind a `Plan.env_tables` field (serve.env, arms[2].env), if the file has it."""
    match = re.fullmatch(r"arms\[(\d+)\]\.env", field)
    holder = raw.get("arms", [])[int(match.group(1))] if match else raw.get("serve", {})
    table = holder.get("env" if match else field.removeprefix("serve."))
    return table if isinstance(table, dict) else None


def _tokens(value: str) -> list[str]:
    """The ways a TOML file may spell the value `value` (a string, or a number written bare)."""
    return [re.escape(json.dumps(value, ensure_ascii=False)), re.escape(f"'{value}'"), re.escape(value)]


def redacted_plan_text(source: Path) -> str:
    """The text of the plan at `source` with each hidden literal env value replaced by its `{ redacted = … }`."""
    plan = load_toml_model(source, Plan)
    policy = env_policy(plan)
    text = source.read_text(encoding="utf-8")
    expected = copy.deepcopy(tomllib.loads(text))
    hidden = []
    for field, env in plan.env_tables():
        for key, value in env.items():
            if isinstance(value, str) and not policy.shows(key):
                hidden.append(f"{field}.{key}")
                marker = sha_prefix(value)
                table = _raw_table(expected, field)
                if table is not None and key in table:
                    table[key] = {"redacted": marker}
                names = "|".join(re.escape(k) for k in (key, f'"{key}"', f"'{key}'"))
                pattern = rf"(^|[\s{{,])({names})(\s*=\s*)(?:{'|'.join(_tokens(value))})(?=\s*(?:[,}}#]|$))"
                text = re.sub(pattern, rf'\g<1>\g<2>\g<3>{{ redacted = "{marker}" }}', text, flags=re.M)
    try:
        written = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        written = None
    if written != expected:
        raise PlanCopyError(
            f"{source}: the run directory's copy of the plan must not hold the values of {', '.join(hidden)}, and "
            'their spelling could not be replaced; write each as a plain string, or as { from_env = "NAME" }'
        )
    return text


def restore_held_values(loaded: LoadedPlan, original: Path | None) -> LoadedPlan:
    """`loaded` (a plan copy) with each held value read again from the `original` plan where its sha256 matches;
    values it cannot find stay held (pre-flight names them). The values live only in the returned model."""
    tables = {f: env for f, env in loaded.plan.env_tables() if any(isinstance(v, HeldValue) for v in env.values())}
    if not tables or original is None:
        return loaded
    try:
        source = load_toml_model(original, Plan)
    except (ConfigFileError, OSError):
        return loaded
    arms_by_name = {a.name: a.env for a in source.arms}
    plan = loaded.plan

    def restored(env: dict, found: dict) -> dict:
        return {
            k: found[k] if isinstance(v, HeldValue) and isinstance(found.get(k), str)
            and sha_prefix(found[k]) == v.redacted else v
            for k, v in env.items()
        }  # fmt: skip

    serve = plan.serve.model_copy(update={
        "env": restored(dict(plan.serve.env), dict(source.serve.env)),
        "supplementary_env": restored(dict(plan.serve.supplementary_env), dict(source.serve.supplementary_env)),
    })  # fmt: skip
    arms = [a.model_copy(update={"env": restored(dict(a.env), dict(arms_by_name.get(a.name, {})))}) for a in plan.arms]
    return dataclasses.replace(loaded, plan=plan.model_copy(update={"serve": serve, "arms": arms}))
