"""A whole soak plan: serve target, watchdog, arms, phases and gates, validated together; its step order.

Steps are (arm, mode, phase, rep); every primary step of every arm runs before any supplementary step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runners.plan.fields import ENV_KEY, FromEnv, HeldValue, PlanEnvValue, check_slug
from runners.plan.phases import Phase
from runners.plan.sections import ArmSpec, GatesSpec, WatchdogSpec
from runners.plan.serve_spec import ServeSpec
from runners.plan.steps import MODES, Session, StepKey


class Plan(BaseModel):
    """A whole soak plan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    secret: list[str] = Field(
        default_factory=list, description="env keys whose values are never shown, even when they differ between arms"
    )
    serve: ServeSpec
    watchdog: WatchdogSpec = Field(default_factory=WatchdogSpec)
    arms: list[ArmSpec] = Field(min_length=1)
    phases: list[Phase] = Field(min_length=1)
    gates: GatesSpec = Field(default_factory=GatesSpec)

    _name_ok = field_validator("name")(check_slug)

    @field_validator("secret")
    @classmethod
    def _secret_names(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not ENV_KEY.match(n)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))}: not environment variable names")
        return names

    @model_validator(mode="before")
    @classmethod
    def _serve_kind_default(cls, data: object) -> object:
        """A [serve] table without `kind` is a local process (plans written before other kinds existed)."""
        if isinstance(data, dict) and isinstance(data.get("serve"), dict) and "kind" not in data["serve"]:
            data = {**data, "serve": {**data["serve"], "kind": "process"}}
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> Plan:
        for what, names in (("arms", [a.name for a in self.arms]), ("phases", [p.name for p in self.phases])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what} names must be unique; repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _gate_names_exist(self) -> Plan:
        g = self.gates
        if g.baseline is not None and g.baseline not in {a.name for a in self.arms}:
            raise ValueError(f"gates.baseline: no arm is called {g.baseline!r}")
        kinds = {p.name: p.kind for p in self.phases}
        modes = {p.name: p.mode for p in self.phases}
        for field, value, want in (
            ("gsm8k_phase", g.gsm8k_phase, "gsm8k"),
            ("wall_phase", g.wall_phase, None),
            ("tpot_phase", g.tpot_phase, None),
            ("long_decode_phase", g.long_decode_phase, "longdecode"),
        ):
            if value is None:
                continue
            if value not in kinds:
                raise ValueError(f"gates.{field}: no phase is called {value!r}")
            if want is not None and kinds[value] != want:
                raise ValueError(f"gates.{field}: phase {value!r} is a {kinds[value]} phase, not {want}")
            if modes[value] != "primary":
                raise ValueError(f"gates.{field}: phase {value!r} is supplementary; verdicts use primary timing")
        return self

    def phase(self, name: str) -> Phase:
        """The phase called `name`."""
        return next(p for p in self.phases if p.name == name)

    def arm(self, name: str) -> ArmSpec:
        """The arm called `name`."""
        return next(a for a in self.arms if a.name == name)

    def env_tables(self) -> list[tuple[str, Mapping[str, PlanEnvValue]]]:
        """(field, env) for every env table of the plan: serve.env, serve.supplementary_env, arms[i].env."""
        serve = self.serve
        out = [("serve.env", serve.env), ("serve.supplementary_env", serve.supplementary_env)]
        return out + [(f"arms[{i}].env", arm.env) for i, arm in enumerate(self.arms)]

    def missing_env_values(self, environ: Mapping[str, str] = os.environ) -> list[str]:
        """`field.KEY: why` for each env value the target could not be given (pre-flight): a `{ from_env = NAME }`
        whose NAME is not set in `environ`, a value a run's plan copy does not hold and could not read again."""
        out = []
        for field, env in self.env_tables():
            for key, value in env.items():
                if isinstance(value, FromEnv) and value.from_env not in environ:
                    out.append(f'{field}.{key}: {{ from_env = "{value.from_env}" }}, but {value.from_env} is not set')
                elif isinstance(value, HeldValue):
                    out.append(
                        f"{field}.{key}: the run directory's plan copy does not hold this value ({value.redacted}) and "
                        "the original plan no longer has it; restore it there, or write "
                        f'{{ from_env = "NAME" }} in its place in the copy and set NAME'
                    )
        return out

    def session_env(self, arm: str, mode: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
        """The env a session's target runs with: serve.env, supplementary_env in that mode, the arm's env;
        `{ from_env = NAME }` values read from `environ` here (never stored). Raises ValueError naming the key
        when one cannot be had."""
        extra = self.serve.supplementary_env if mode == "supplementary" else {}
        merged = {**self.serve.env, **extra, **self.arm(arm).env}
        out = {}
        for key, value in merged.items():
            if isinstance(value, FromEnv):
                if value.from_env not in environ:
                    raise ValueError(f"env {key} of arm {arm}: {value.from_env} is not set in the runner's environment")
                out[key] = environ[value.from_env]
            elif isinstance(value, HeldValue):
                raise ValueError(f"env {key} of arm {arm}: the run's plan copy does not hold it ({value.redacted})")
            else:
                out[key] = value
        return out

    def sessions(self) -> list[Session]:
        """Serve sessions in run order: every arm's primary steps, then every arm's supplementary steps."""
        out = []
        for mode in MODES:
            for arm in self.arms:
                steps = tuple(
                    StepKey(arm.name, mode, p.name, rep)
                    for p in self.phases
                    if p.mode == mode
                    for rep in range(p.repeats)
                )
                if steps:
                    out.append(Session(arm, mode, steps))
        return out

    def steps(self) -> list[StepKey]:
        """Every step in run order."""
        return [s for session in self.sessions() for s in session.steps]
