"""The plan's other tables: `[watchdog]` floors and timings, `[[arms]]`, `[gates]` thresholds."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runners.plan.fields import EnvValue, check_env, check_slug


class WatchdogSpec(BaseModel):
    """The memory watchdog's floors and timings; floors left out follow the host's size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warn_gib: float | None = Field(None, gt=0, description="MemAvailable below this: WARN (no profiler start/stop)")
    abort_gib: float | None = Field(None, gt=0, description="below this: stop dispatch and the target")
    kill_gib: float | None = Field(None, gt=0, description="below this (or predicted within the horizon): kill")
    predict_horizon_s: float = Field(
        5.0, ge=0, le=60, description="kill at ABORT when a sustained fill reaches KILL within this; 0: floors only"
    )
    psi_full_avg10_abort: float = Field(20.0, gt=0, le=100, description="PSI full avg10 % confirming WARN -> ABORT")
    post_action_delay_s: float = Field(15.0, ge=0, le=600)
    runner_stale_s: float = Field(10.0, gt=0, le=600, description="guard stops the target after this runner silence")
    guard_stale_s: float = Field(5.0, gt=0, le=600, description="runner fails closed after this guard silence")
    restart_wait_s: float = Field(600.0, gt=0, le=86400, description="wait for memory to recover before a start")
    unified_memory: Literal["auto", "yes", "no"] = Field(
        "auto", description="the GPU allocates from host memory (a GB10); auto asks NVML"
    )
    drop_page_cache: bool = Field(
        False, description="root only: drop the page cache before a start when MemFree is short of what vLLM asks"
    )

    @model_validator(mode="after")
    def _floors_all_or_none(self) -> WatchdogSpec:
        given = [f for f in (self.warn_gib, self.abort_gib, self.kill_gib) if f is not None]
        if given and len(given) != 3:
            raise ValueError("give warn_gib, abort_gib and kill_gib together (or none: sized from the host)")
        if len(given) == 3 and not (self.warn_gib > self.abort_gib > self.kill_gib):  # type: ignore[operator]
            raise ValueError("floors must fall: warn_gib > abort_gib > kill_gib")
        return self


class ArmSpec(BaseModel):
    """One variant under test: a name, the environment that selects it, and what serving mechanism it is.

    The mechanism fields are free text on purpose: the mechanism gate judges them against the JSON
    registries in configs/registries/, so an unregistered value fails that gate instead of the plan.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    env: dict[str, EnvValue] = Field(default_factory=dict)
    mechanism: str = Field("baseline", description="serving mechanism, e.g. kv_quantization (registry key)")
    variant: str = Field("baseline", description="the mechanism's variant, e.g. fp8_e4m3 (registry key)")
    support: str = Field("experimental", description='"supported" (offered to users), "experimental" or "unsupported"')
    quality_eval: str | None = Field(None, description="the quality evaluation behind the variant, e.g. ruler_v1")
    quality_eval_status: str = Field("not_required", description="pending | completed | failed | not_required")
    draft_model_id: str | None = Field(None, description="speculative decoding: the draft model")
    acceptance_rate: float | None = Field(
        None, ge=0, le=1, description="speculative decoding: measured elsewhere; the run's own metrics win"
    )

    _name_ok = field_validator("name")(check_slug)
    _env_ok = field_validator("env")(check_env)


class GatesSpec(BaseModel):
    """`[gates]`: which arm is the baseline, which phases decide, and the thresholds of each gate.

    Phase names left empty are chosen from the plan: the first GSM8K phase; for wall time and TPOT
    the primary non-GSM8K phase with the most repeats; the first long-decode phase. The `measurement_*`
    bounds decide when a step's client TTFT/ITL means disagree with the server's own histograms
    (runners/replay/measurement_check.py); an arm with such a deciding step gets no verdict.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    baseline: str | None = Field(None, description="the baseline arm (default: the first arm)")
    gsm8k_phase: str | None = None
    gsm8k_match: Literal["strict", "flexible"] = "strict"
    gsm8k_floor: int | None = Field(None, ge=0, description="correct answers an arm needs per GSM8K run")
    gsm8k_parity: int = Field(2, ge=0, description="questions an arm may trail the baseline by")
    wall_phase: str | None = None
    min_wall_improvement_pct: float = Field(5.0, description="default candidate: faster wall by at least this")
    tpot_phase: str | None = None
    tpot_p95_tolerance_pct: float = Field(0.0, ge=0, description="TPOT p95 may be this much worse and still pass")
    long_decode_phase: str | None = None
    reproduce_tolerance_pct: float = Field(2.0, gt=0, description="reproduction: kernel µs and ms/token Δ% bound")
    reproduce_gsm8k_questions: int = Field(2, ge=0, description="reproduction: GSM8K bound in questions")
    reproduce_from: str | None = Field(None, description="a prior run directory to reproduce (plan-relative)")
    registries: str | None = Field(None, description="registry directory (default: configs/registries)")
    measurement_ttft_abs_ms: float = Field(
        25.0, ge=0, description="measurement: TTFT means disagree beyond max(this, the relative bound)"
    )
    measurement_ttft_rel_pct: float = Field(
        50.0, ge=0, description="measurement: TTFT bound as % of the server's mean (the larger bound applies)"
    )
    measurement_itl_rel_pct: float = Field(
        50.0, ge=0, description="measurement: client and server ITL means disagree beyond this % of the server's"
    )
