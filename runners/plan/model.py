"""A whole soak plan: serve target, watchdog, arms, phases and gates, validated together; its step order.

Steps are (arm, mode, phase, rep); every primary step of every arm runs before any supplementary step.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runners.plan.fields import check_slug
from runners.plan.phases import Phase
from runners.plan.sections import ArmSpec, GatesSpec, WatchdogSpec
from runners.plan.serve_spec import ServeSpec
from runners.plan.steps import MODES, Session, StepKey


class Plan(BaseModel):
    """A whole soak plan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    serve: ServeSpec
    watchdog: WatchdogSpec = Field(default_factory=WatchdogSpec)
    arms: list[ArmSpec] = Field(min_length=1)
    phases: list[Phase] = Field(min_length=1)
    gates: GatesSpec = Field(default_factory=GatesSpec)

    _name_ok = field_validator("name")(check_slug)

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

    def session_env(self, arm: str, mode: str) -> dict[str, str]:
        """The env a session's target runs with: serve.env, supplementary_env in that mode, the arm's env."""
        extra = self.serve.supplementary_env if mode == "supplementary" else {}
        return {**self.serve.env, **extra, **self.arm(arm).env}

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
