"""What differs between the work two runs measured: a comparison of two plans is only a verdict when they match.

Compared (each a `PlanDifference` with both values as text):
- phases matched by name: a phase in one plan only; a different kind; else every field of the phase except
  those that only say how the work is observed or bounded (`OBSERVATION_FIELDS`: repetitions, deadlines,
  percentiles, SLOs, scrape interval, coherence thresholds), so requests/questions/streams, max_tokens,
  concurrency/arrival/rate, dataset, endpoint, ignore_eos, temperature, seeds, stop strings... all count;
- the data each phase read: the sha256 provenance.json `datasets` recorded for a phase's field, where both
  runs recorded one;
- the phases the reproduction gate reads (the deciding TPOT and GSM8K phases after the plan's defaults);
- arms present in both plans: each env key (values shown only as each plan's `env_policy` allows);
- the serve target: kind, command/image/entrypoint/engine config/URL and the container settings that change
  what runs (not deadlines, sockets or mount points), `[serve] env` and `supplementary_env` per key, and the
  model(s) the target served (events.jsonl `serve_ready`).

Arms present in one run only are not a difference here: the reproduction gate lists them and judges the rest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from pydantic import BaseModel

from runners.evidence.results import deciding_phases
from runners.plan.model import Plan
from runners.run.redact import EnvPolicy, env_policy, redact_argv

ABSENT = "absent"
NOT_COMPARABLE = "not comparable"
DIFFERENT_WORK = "the runs measured different work"

OBSERVATION_FIELDS = frozenset({
    "name", "repeats", "http_timeout_s", "deadline_s", "stall_s", "percentiles", "slo_ttft_ms", "slo_tpot_ms",
    "slo_e2el_ms", "metrics_interval_s", "profile_stop_timeout_s", "max_repetition", "max_nonprintable",
})  # fmt: skip
SERVE_SETTINGS_IGNORED = frozenset({
    "env", "supplementary_env", "ready_timeout_s", "stop_timeout_s", "health_interval_s", "host", "container_port",
    "env_mount", "profile_mount", "plugin_mount", "socket", "keep_container",
})  # fmt: skip
ARGV_FIELDS = frozenset({"command", "entrypoint"})


@dataclass(frozen=True)
class PlanDifference:
    """One thing the two runs did differently: where (`what`), and the value in run A (prior) and run B."""

    what: str
    a: str
    b: str

    def as_dict(self) -> dict:
        """JSON form."""
        return asdict(self)

    def describe(self) -> str:
        """One line: `what: A's value (A) vs B's value (B)`."""
        return f"{self.what}: {self.a} (A) vs {self.b} (B)"


@dataclass(frozen=True)
class MeasuredWork:
    """What one run measured: its plan copy, provenance.json's `datasets` records, the models its target served."""

    plan: Plan
    datasets: tuple[dict, ...] = ()
    models: tuple[str, ...] = field(default_factory=tuple)


def value_text(value: object) -> str:
    """A plan value as people read it: TOML spelling for booleans, JSON for lists, tables and models."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _fields(prefix: str, a: dict, b: dict, ignored: frozenset[str]) -> list[PlanDifference]:
    """Every key of `a` or `b` (in a's order, then b's) whose values differ, outside `ignored`."""
    out = []
    for key in dict.fromkeys([*a, *b]):
        if key in ignored or a.get(key) == b.get(key):
            continue
        va, vb = a.get(key), b.get(key)
        if key in ARGV_FIELDS:
            va = redact_argv([str(x) for x in va]) if isinstance(va, list) else va
            vb = redact_argv([str(x) for x in vb]) if isinstance(vb, list) else vb
        out.append(PlanDifference(f"{prefix}{key}", value_text(va), value_text(vb)))
    return out


def _env(prefix: str, a: dict, b: dict, policies: tuple[EnvPolicy, EnvPolicy]) -> list[PlanDifference]:
    """Per env key: a key set on one side only, or set to another value (each shown as its plan's policy allows)."""
    out = []
    for key in dict.fromkeys([*a, *b]):
        if a.get(key) == b.get(key):
            continue

        def shown(env: dict, policy: EnvPolicy, key: str = key) -> str:
            return policy.value(key, env[key]) if key in env else "unset"

        out.append(PlanDifference(f"{prefix}{key}", shown(a, policies[0]), shown(b, policies[1])))
    return out


def _dataset_hashes(records: tuple[dict, ...]) -> dict[tuple[str, str], str]:
    """(phase, field) -> sha256 of the data file provenance.json recorded for it."""
    return {
        (str(r.get("phase")), str(r.get("field"))): str(r["sha256"])
        for r in records
        if isinstance(r, dict) and isinstance(r.get("sha256"), str)
    }


def _phases(a: MeasuredWork, b: MeasuredWork) -> list[PlanDifference]:
    out = []
    pa, pb = {p.name: p for p in a.plan.phases}, {p.name: p for p in b.plan.phases}
    for name in dict.fromkeys([*pa, *pb]):
        if name not in pa or name not in pb:
            here = f"a {(pa.get(name) or pb[name]).kind} phase"
            out.append(PlanDifference(f"phase {name}", here if name in pa else ABSENT, here if name in pb else ABSENT))
            continue
        if pa[name].kind != pb[name].kind:
            out.append(PlanDifference(f"phase {name}: kind", pa[name].kind, pb[name].kind))
            continue
        out += _fields(f"phase {name}: ", pa[name].model_dump(), pb[name].model_dump(), OBSERVATION_FIELDS)
    ha, hb = _dataset_hashes(a.datasets), _dataset_hashes(b.datasets)
    for phase, data_field in dict.fromkeys([*ha, *hb]):
        sa, sb = ha.get((phase, data_field)), hb.get((phase, data_field))
        if sa is not None and sb is not None and sa != sb and phase in pa and phase in pb:
            out.append(PlanDifference(f"phase {phase}: {data_field} sha256", sa, sb))
    return out


def _deciding(a: Plan, b: Plan) -> list[PlanDifference]:
    da, db = deciding_phases(a), deciding_phases(b)
    return [
        PlanDifference(f"the {label} phase reproduction reads", value_text(x), value_text(y))
        for label, x, y in (("TPOT", da.tpot, db.tpot), ("GSM8K", da.gsm8k, db.gsm8k))
        if x != y
    ]


def _serve(a: MeasuredWork, b: MeasuredWork) -> list[PlanDifference]:
    sa, sb = a.plan.serve, b.plan.serve
    policies = env_policy(a.plan), env_policy(b.plan)
    out = _fields("serve: ", sa.model_dump(), sb.model_dump(), SERVE_SETTINGS_IGNORED)
    out += _env("serve: env ", dict(sa.env), dict(sb.env), policies)
    out += _env("serve: supplementary_env ", dict(sa.supplementary_env), dict(sb.supplementary_env), policies)
    if a.models and b.models and set(a.models) != set(b.models):
        out.append(PlanDifference("serve: model served", ", ".join(a.models), ", ".join(b.models)))
    return out


def _arms(a: Plan, b: Plan) -> list[PlanDifference]:
    arms_b = {arm.name: arm for arm in b.arms}
    policies = env_policy(a), env_policy(b)
    return [
        d
        for arm in a.arms
        if arm.name in arms_b
        for d in _env(f"arm {arm.name}: env ", dict(arm.env), dict(arms_b[arm.name].env), policies)
    ]


def plan_differences(a: MeasuredWork, b: MeasuredWork) -> list[PlanDifference]:
    """Everything that changes the work run A and run B measured (the module docstring lists it); empty: same work."""
    return [*_phases(a, b), *_deciding(a.plan, b.plan), *_arms(a.plan, b.plan), *_serve(a, b)]
