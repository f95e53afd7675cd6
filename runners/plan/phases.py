"""`[[phases]]`: the workload kinds (sharegpt, longdecode, gsm8k, concurrent, trace) and their bounds."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from runners.plan.data_refs import DATA_FIELDS, DataRef, DataRefError, parse_data_ref
from runners.plan.fields import check_slug
from runners.plan.steps import SERVE_DIR_ENTRIES

PROFILE_DIR = "{profile_dir}"


def check_dump_path(value: str) -> str:
    """A file's absolute host path, or one under `{profile_dir}/` (the serve target's runner-owned trace directory)."""
    under_profile_dir = value.startswith(PROFILE_DIR + "/")
    rest = value[len(PROFILE_DIR) :] if under_profile_dir else value
    if not rest.startswith("/"):
        raise ValueError(f"{value!r} must be an absolute host path or start with {PROFILE_DIR}/")
    if "{" in rest or "}" in rest:
        raise ValueError(f"{value!r}: the only placeholder is {PROFILE_DIR}, at the start")
    if rest.endswith("/"):
        raise ValueError(f"{value!r} names a directory; give a file path")
    return value


class RegionTimingSpec(BaseModel):
    """`region_timings`: a per-CTA region-timing dump of the step, asked for through a sentinel file (as nvllm's
    `/tmp/.dump_region_timings`) and read back as an int64 [ctas, regions, 2] tick buffer (`.npy`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trigger: str = Field(description="file the runner creates before the replay; absolute, or {profile_dir}/...")
    output: str = Field(description="the .npy the target writes on seeing the trigger; absolute or {profile_dir}/...")
    regions: list[str] | None = Field(None, min_length=1, description="region names in buffer order")
    active_ctas: int | None = Field(None, ge=1, description="CTAs the grid launched (the buffer may hold more rows)")
    kernel: str | None = Field(None, min_length=1, description="the profiler's name of the kernel, to calibrate ticks")
    tick_ns: float | None = Field(None, gt=0, le=1e9, description="ns per tick (1.0 for globaltimer)")
    wait_s: float = Field(30.0, gt=0, le=3600, description="wait at most this long for the output to appear and settle")

    _paths_ok = field_validator("trigger", "output")(check_dump_path)

    @field_validator("output")
    @classmethod
    def _npy(cls, value: str) -> str:
        if not value.endswith(".npy"):
            raise ValueError(f"{value!r}: the output is a numpy .npy file; name it *.npy")
        return value

    @field_validator("regions")
    @classmethod
    def _names(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (len(set(value)) != len(value) or not all(name.strip() for name in value)):
            raise ValueError(f"region names must be distinct and not blank; got {value}")
        return value

    @model_validator(mode="after")
    def _two_files(self) -> RegionTimingSpec:
        if self.trigger == self.output:
            raise ValueError("trigger and output must be different files")
        return self


class PhaseBase(BaseModel):
    """What every phase kind shares: identity, request shape, bounds and what to measure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    mode: Literal["primary", "supplementary"] = "primary"
    repeats: int = Field(1, ge=1, le=1000)
    endpoint: Literal["chat", "completions"] = "chat"
    max_tokens: int = Field(128, ge=1, le=1_000_000)
    temperature: float = Field(0.0, ge=0.0, le=10.0)
    seed: int | None = Field(0, description="request i is sent with seed + i; None sends no seed")
    ignore_eos: bool = False
    stop: list[str] = Field(default_factory=list, description="stop strings sent with every request")
    limit_requests: int | None = Field(None, ge=1, description="hard cap on HTTP requests the phase sends")
    max_prompt_chars: int = Field(8000, ge=1, description="longer prompts are skipped before counting")
    http_timeout_s: float = Field(120.0, gt=0, le=86400, description="total deadline of one request")
    deadline_s: float = Field(3600.0, gt=0, le=7 * 86400, description="deadline of the whole step")
    stall_s: float | None = Field(
        None, gt=0, le=86400,
        description="no chunk on any stream for this long while requests are in flight (and no generated token "
        "on /metrics) is a stall: the target is killed; None: sized from http_timeout_s (runners.soak.stall_watch)",
    )  # fmt: skip
    percentiles: list[float] = Field(default_factory=lambda: [50.0, 90.0, 95.0, 99.0], min_length=1)
    slo_ttft_ms: float | None = Field(None, gt=0, description="goodput objective on TTFT")
    slo_tpot_ms: float | None = Field(None, gt=0, description="goodput objective on TPOT")
    slo_e2el_ms: float | None = Field(None, gt=0, description="goodput objective on E2EL")
    metrics_interval_s: float | None = Field(0.5, gt=0, le=3600, description="scrape /metrics; None: never")
    profile: bool = Field(False, description="wrap the step in /start_profile and /stop_profile (supplementary)")
    profile_stop_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="hard deadline of /stop_profile; past it the target is killed"
    )
    region_timings: RegionTimingSpec | None = Field(
        None, description="ask the target for a region-timing dump during the step (supplementary)"
    )

    _name_ok = field_validator("name")(check_slug)

    @field_validator("name")
    @classmethod
    def _not_a_serve_file(cls, value: str) -> str:
        """A phase's directory sits beside its serve session's files (`arms/<arm>/<mode>/`): not one of their names."""
        if value in SERVE_DIR_ENTRIES:
            raise ValueError(
                f"{value!r} is the name of what a serve session keeps beside its steps (arms/<arm>/<mode>/{value}); "
                f"name the phase otherwise (not {', '.join(SERVE_DIR_ENTRIES)})"
            )
        return value

    @field_validator(*DATA_FIELDS, check_fields=False)
    @classmethod
    def _data_ref_ok(cls, value: str, info: ValidationInfo) -> str:
        """A dataset name, `hf://` reference or path that can be read (a local file is checked on load)."""
        if value != "builtin":
            try:
                parse_data_ref(value, info.field_name or "")
            except DataRefError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _profile_is_supplementary(self) -> PhaseBase:
        if self.profile and self.mode != "supplementary":
            raise ValueError('profile = true belongs in mode = "supplementary": primary passes keep clean timing')
        if self.region_timings is not None and self.mode != "supplementary":
            raise ValueError('region_timings belongs in mode = "supplementary": primary passes keep clean timing')
        return self

    @field_validator("percentiles")
    @classmethod
    def _percentiles_ok(cls, value: list[float]) -> list[float]:
        bad = [q for q in value if not 0 <= q <= 100]
        if bad:
            raise ValueError(f"percentiles must lie in 0..100; got {bad}")
        return value


class OpenLoopFields(BaseModel):
    """How requests arrive: a closed loop of `concurrency` workers, or a rate (open loop)."""

    arrival: Literal["closed", "constant", "poisson", "gamma"] = Field(
        "closed", description="closed: `concurrency` workers back to back; otherwise `rate` requests/s"
    )
    concurrency: int | None = Field(
        None, ge=1, le=4096, description="workers of a closed loop (default 1), or a cap on conversations in flight"
    )
    rate: float | None = Field(None, gt=0, le=100_000, description="requests per second for open-loop arrivals")
    burstiness: float = Field(1.0, gt=0, le=100, description="gamma shape: 1 is Poisson, < 1 burstier")

    @model_validator(mode="after")
    def _rate_matches_arrival(self) -> OpenLoopFields:
        if self.arrival == "closed" and self.rate is not None:
            raise ValueError('rate is for open-loop arrivals; set arrival = "constant", "poisson" or "gamma"')
        if self.arrival != "closed" and self.rate is None:
            raise ValueError(f'arrival = "{self.arrival}" needs rate (requests per second)')
        return self


class ShareGptPhase(PhaseBase, OpenLoopFields):
    """Replay conversations from a ShareGPT-format file (or built-ins), single or multi-turn."""

    kind: Literal["sharegpt"]
    dataset: str = Field(
        "builtin",
        description='"builtin", "sharegpt" (fetched from the Hub), hf://owner/repo@revision/path or a ShareGPT-format '
        "JSON file (relative to the plan)",
    )
    requests: int = Field(ge=1, le=1_000_000, description="conversations to replay")
    max_turns: int = Field(1, ge=1, le=64, description="user turns replayed per conversation")
    history: Literal["recorded", "live"] = Field(
        "recorded", description="recorded: the dataset's own replies; live: the model's answers"
    )

    @model_validator(mode="after")
    def _multi_turn_is_chat(self) -> ShareGptPhase:
        if self.max_turns > 1 and self.endpoint != "chat":
            raise ValueError('multi-turn replay (max_turns > 1) needs endpoint = "chat"')
        return self


class LongDecodePhase(PhaseBase, OpenLoopFields):
    """Long generations (2048 tokens by default, EOS ignored) with a warning-only coherence check."""

    kind: Literal["longdecode"]
    dataset: str = "builtin"
    requests: int = Field(4, ge=1, le=100_000)
    max_tokens: int = Field(2048, ge=1, le=1_000_000)
    ignore_eos: bool = True
    max_repetition: float = Field(0.5, gt=0, le=1, description="warn above this repeated-16-gram ratio")
    max_nonprintable: float = Field(0.05, ge=0, le=1, description="warn above this non-printable ratio")


class Gsm8kPhase(PhaseBase, OpenLoopFields):
    """GSM8K as lm-evaluation-harness gsm8k v3 scores it: 5-shot, greedy, strict and flexible match."""

    kind: Literal["gsm8k"]
    test_file: str = Field(
        description='GSM8K test split: "gsm8k" (the Hub\'s parquet, as lm-eval reads it), hf://… or a JSONL/parquet'
    )
    train_file: str = Field(description='GSM8K train split for the few-shot examples: "gsm8k", hf://… or a file')
    questions: int = Field(50, ge=1, le=100_000, description="questions sampled from the test split")
    sample_seed: int = 42
    fewshot: int = Field(5, ge=0, le=32)
    fewshot_seed: int = 1234
    endpoint: Literal["chat", "completions"] = "completions"
    max_tokens: int = Field(256, ge=1, le=100_000)
    stop: list[str] = Field(default_factory=lambda: ["Question:", "</s>", "<|im_end|>"])
    max_prompt_chars: int = Field(100_000, ge=1)

    @field_validator("endpoint")
    @classmethod
    def _completions_only(cls, value: str) -> str:
        if value != "completions":
            raise ValueError('gsm8k is scored on raw completions; use endpoint = "completions"')
        return value


class ConcurrentPhase(PhaseBase):
    """A probe: `streams` requests sent at the same instant."""

    kind: Literal["concurrent"]
    dataset: str = "builtin"
    streams: int = Field(ge=1, le=4096)


class TracePhase(PhaseBase):
    """Replay a mooncake-style timestamped trace: send times, lengths and shared prefixes from the file."""

    kind: Literal["trace"]
    trace: str = Field(description="JSONL trace: timestamp (ms), input_length, output_length, hash_ids")
    requests: int | None = Field(None, ge=1, description="the first N entries; None: all of them")
    time_scale: float = Field(1.0, gt=0, le=1000, description="2.0 replays twice as slowly")
    block_tokens: int = Field(512, ge=1, le=65536, description="tokens per hash-id block")
    chars_per_token: float = Field(1.0, gt=0, le=16, description="prompt characters per trace token")
    concurrency: int = Field(4096, ge=1, le=4096, description="cap on requests in flight")
    ignore_eos: bool = True


Phase = Annotated[
    ShareGptPhase | LongDecodePhase | Gsm8kPhase | ConcurrentPhase | TracePhase, Field(discriminator="kind")
]


def phase_data(phase: PhaseBase) -> dict[str, DataRef]:
    """What each of the phase's data fields refers to, by field name ("builtin" datasets need none)."""
    refs = {}
    for name in DATA_FIELDS:
        value = getattr(phase, name, None)
        if isinstance(value, str) and value != "builtin":
            refs[name] = parse_data_ref(value, name)
    return refs
