"""Soak plans: TOML -> validated models. Errors name the file, the line and the field.

A plan has a serve target (a local process, a Docker container, or an external URL), arms (each
an environment for the target), and phases (workloads run against every arm; each phase has a
`kind`: sharegpt, longdecode, gsm8k, concurrent or trace). Steps are (arm, mode, phase, rep);
every primary step of every arm runs before any supplementary step.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from engine.config_file import ConfigFileError, load_toml_model

SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MODES = ("primary", "supplementary")


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ValueError(f"env values must be strings or numbers, got {type(value).__name__}")


EnvValue = Annotated[str, BeforeValidator(_env_value)]


def _check_env(env: dict[str, str]) -> dict[str, str]:
    for key, value in env.items():
        if not ENV_KEY.match(key):
            raise ValueError(f"{key!r} is not a valid environment variable name")
        if "\n" in value:
            raise ValueError(f"the value of {key} spans lines")
    return env


def _check_slug(value: str) -> str:
    if not SLUG.match(value):
        raise ValueError(
            f"{value!r} must be 1-64 characters of letters, digits, '.', '_' or '-' (it names directories)"
        )
    return value


SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
MOUNT = re.compile(r"^([^:]+):(/[^:]*)(?::(ro|rw))?$")


def parse_size(value: str | int) -> int:
    """`"16g"`, `"512m"`, `"1.5GiB"` or a byte count -> bytes (powers of 1024, as Docker reads them)."""
    if isinstance(value, int):
        return value
    match = SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size; write it like 16g, 512m or a byte count")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** "_kmgt".index(unit or "_"))


def ulimit_pair(name: str, value: int | str) -> tuple[int, int]:
    """(soft, hard) from `1024`, `"1024:4096"` or -1 (unlimited), as `docker run --ulimit` reads them."""
    if not re.match(r"^[a-z]+$", name):
        raise ValueError(f"{name!r} is not a ulimit name (nofile, nproc, memlock, stack, core, ...)")
    parts = [value] if isinstance(value, int) else str(value).split(":")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        raise ValueError(f"ulimit {name} = {value!r}: write a number, SOFT:HARD or -1") from None
    if len(numbers) not in (1, 2):
        raise ValueError(f"ulimit {name} = {value!r}: write a number, SOFT:HARD or -1")
    return numbers[0], numbers[-1]


def _check_gpus(value: object) -> object:
    if isinstance(value, bool) or not (value in ("all", "none") or (isinstance(value, int) and value >= 1)):
        raise ValueError(f'{value!r}: write "all", "none" or a GPU count of at least 1')
    return value


def _check_size(value: str | int | None) -> str | int | None:
    if value is not None:
        parse_size(value)
    return value


class ServeCommon(BaseModel):
    """What every serve target kind shares: env, per-mode env, and the readiness/stop deadlines."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: dict[str, EnvValue] = Field(default_factory=dict, description="env for every arm (an arm's env wins)")
    supplementary_env: dict[str, EnvValue] = Field(
        default_factory=dict, description="added in supplementary sessions (profiler, region timing)"
    )
    ready_timeout_s: float = Field(120.0, gt=0, le=7200)
    stop_timeout_s: float = Field(10.0, gt=0, le=600)
    health_interval_s: float = Field(5.0, gt=0, le=600, description="probe /health this often during a step")

    _env_ok = field_validator("env", "supplementary_env")(_check_env)


class ProcessServe(ServeCommon):
    """A local process: the embedded engine unless `command` is given."""

    kind: Literal["process"] = "process"
    engine_config: str | None = Field(
        None, description="embedded engine config, relative to the plan file; used when command is empty"
    )
    command: list[str] = Field(
        default_factory=list,
        description="argv with placeholders {python} {host} {port} {env_dir} {plan_dir}",
    )
    host: Literal["127.0.0.1", "localhost", "::1"] = "127.0.0.1"

    @model_validator(mode="after")
    def _one_target(self) -> ProcessServe:
        if not self.command and not self.engine_config:
            raise ValueError("give either engine_config (the embedded engine) or command")
        if self.command and self.engine_config:
            raise ValueError("give engine_config or command, not both")
        if self.command and "{port}" not in " ".join(self.command):
            raise ValueError("command must contain {port} so the runner can pick a free port")
        return self


class DockerServe(ServeCommon):
    """A container on the local Docker (or Podman) engine, created and owned by the runner."""

    kind: Literal["docker"]
    image: str = Field(min_length=1, description="a local image; gb10-console never pulls")
    command: list[str] = Field(
        default_factory=list, description="the container's command, placeholders {host} {port} {env_dir}"
    )
    entrypoint: list[str] | None = Field(None, description="replaces the image's entrypoint")
    network: Literal["host", "bridge"] = Field(
        "host", description="host: the server binds {host}:{port}; bridge: container_port is published on 127.0.0.1"
    )
    host: Literal["127.0.0.1", "localhost", "::1"] = "127.0.0.1"
    container_port: int = Field(8000, ge=1, le=65535, description="bridge network: the port the server listens on")
    gpus: Annotated[str | int, BeforeValidator(_check_gpus)] = Field(
        "all", description='"all", "none" or a GPU count (--gpus)'
    )
    ipc: Literal["host", "private", "shareable"] = Field("host", description="IPC namespace (--ipc)")
    shm_size: str | int | None = Field(None, description="/dev/shm size (--shm-size), e.g. 16g or bytes")
    memory_limit: str | int | None = Field(None, description="cgroup memory limit (--memory), e.g. 100g or bytes")
    mounts: list[str] = Field(
        default_factory=list, description="HOST:CONTAINER[:ro|rw]; HOST relative to the plan file or ~"
    )
    ulimits: dict[str, int | str] = Field(
        default_factory=dict, description='--ulimit: {nofile = "1024:1024", memlock = -1}; -1 is unlimited'
    )
    env_mount: str = Field("/gb10/env", description="where the arm's ENV sentinel directory appears in the container")
    socket: str | None = Field(None, description="engine socket; default DOCKER_HOST, then the usual paths")
    ready_timeout_s: float = Field(900.0, gt=0, le=7200)
    stop_timeout_s: float = Field(30.0, gt=0, le=600)

    _sizes_ok = field_validator("shm_size", "memory_limit")(_check_size)

    @field_validator("mounts")
    @classmethod
    def _mounts_ok(cls, value: list[str]) -> list[str]:
        for mount in value:
            if not MOUNT.match(mount):
                raise ValueError(f"{mount!r} is not HOST:CONTAINER[:ro|rw] with an absolute CONTAINER path")
        return value

    @field_validator("ulimits")
    @classmethod
    def _ulimits_ok(cls, value: dict[str, int | str]) -> dict[str, int | str]:
        for name, limit in value.items():
            ulimit_pair(name, limit)
        return value

    @field_validator("env_mount")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("env_mount must be an absolute path inside the container")
        return value

    def binds(self, resolve: Callable[[str], Path]) -> list[tuple[Path, str, str]]:
        """Each mount as (host path resolved against the plan, container path, "ro" or "rw")."""
        out = []
        for mount in self.mounts:
            match = MOUNT.match(mount)
            if match is None:  # unreachable: validated above
                raise ValueError(mount)
            out.append((resolve(match.group(1)), match.group(2), match.group(3) or "rw"))
        return out

    @model_validator(mode="after")
    def _port_known(self) -> DockerServe:
        argv = " ".join([*(self.entrypoint or []), *self.command])
        if self.network == "host" and not ("{port}" in argv and "{host}" in argv):
            raise ValueError(
                'with network = "host" the command must contain {host} and {port}: the runner picks a free port, '
                "and a server left to its default address (often 0.0.0.0) is reachable from the whole network"
            )
        if self.shm_size and self.ipc == "host":
            raise ValueError('shm_size needs ipc = "private" or "shareable"; with ipc = "host" /dev/shm is the host\'s')
        return self


class ExternalServe(ServeCommon):
    """A server we do not own: probed and measured, never started or stopped."""

    kind: Literal["external"]
    url: str = Field(description="base URL, e.g. http://127.0.0.1:8000")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+$", value.rstrip("/")):
            raise ValueError(f"{value!r} is not an http(s) base URL like http://127.0.0.1:8000")
        return value.rstrip("/")


ServeSpec = Annotated[ProcessServe | DockerServe | ExternalServe, Field(discriminator="kind")]


class WatchdogSpec(BaseModel):
    """The memory watchdog's floors and timings; floors left out follow the host's size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warn_gib: float | None = Field(None, gt=0, description="MemAvailable below this: WARN (no profiler start/stop)")
    abort_gib: float | None = Field(None, gt=0, description="below this: stop dispatch and the target")
    kill_gib: float | None = Field(None, gt=0, description="below this (or predicted within the horizon): kill")
    predict_horizon_s: float = Field(5.0, gt=0, le=60)
    psi_full_avg10_abort: float = Field(20.0, gt=0, le=100, description="PSI full avg10 % confirming WARN -> ABORT")
    post_action_delay_s: float = Field(15.0, ge=0, le=600)
    runner_stale_s: float = Field(10.0, gt=0, le=600, description="guard stops the target after this runner silence")
    guard_stale_s: float = Field(5.0, gt=0, le=600, description="runner fails closed after this guard silence")
    restart_wait_s: float = Field(600.0, gt=0, le=86400, description="wait for memory to recover before a start")

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

    _name_ok = field_validator("name")(_check_slug)
    _env_ok = field_validator("env")(_check_env)


class GatesSpec(BaseModel):
    """`[gates]`: which arm is the baseline, which phases decide, and the thresholds of each gate.

    Phase names left empty are chosen from the plan: the first GSM8K phase; for wall time and TPOT
    the primary non-GSM8K phase with the most repeats; the first long-decode phase.
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
    percentiles: list[float] = Field(default_factory=lambda: [50.0, 90.0, 95.0, 99.0], min_length=1)
    slo_ttft_ms: float | None = Field(None, gt=0, description="goodput objective on TTFT")
    slo_tpot_ms: float | None = Field(None, gt=0, description="goodput objective on TPOT")
    slo_e2el_ms: float | None = Field(None, gt=0, description="goodput objective on E2EL")
    metrics_interval_s: float | None = Field(2.0, gt=0, le=3600, description="scrape /metrics; None: never")
    profile: bool = Field(False, description="wrap the step in /start_profile and /stop_profile (supplementary)")
    profile_stop_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="hard deadline of /stop_profile; past it the target is killed"
    )

    _name_ok = field_validator("name")(_check_slug)

    @model_validator(mode="after")
    def _profile_is_supplementary(self) -> PhaseBase:
        if self.profile and self.mode != "supplementary":
            raise ValueError('profile = true belongs in mode = "supplementary": primary passes keep clean timing')
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
    dataset: str = Field("builtin", description='"builtin" or a ShareGPT-format JSON file (relative to the plan)')
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
    test_file: str = Field(description="GSM8K test split, JSONL (relative to the plan)")
    train_file: str = Field(description="GSM8K train split for the few-shot examples, JSONL")
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


def phase_files(phase: PhaseBase) -> dict[str, str]:
    """The plan-relative files a phase reads, by field name ("builtin" datasets need none)."""
    files = {}
    for name in ("dataset", "test_file", "train_file", "trace"):
        value = getattr(phase, name, None)
        if isinstance(value, str) and value != "builtin":
            files[name] = value
    return files


@dataclass(frozen=True, order=True)
class StepKey:
    """One unit of work with its own DONE marker: an arm, a mode, a phase and a repetition."""

    arm: str
    mode: str
    phase: str
    rep: int

    @property
    def path(self) -> str:
        """`arm/mode/phase/rep`, the step's relative directory."""
        return f"{self.arm}/{self.mode}/{self.phase}/{self.rep}"

    def as_dict(self) -> dict:
        """JSON form used in events."""
        return {"arm": self.arm, "mode": self.mode, "phase": self.phase, "rep": self.rep}

    @classmethod
    def from_dict(cls, d: dict) -> StepKey:
        """Inverse of as_dict."""
        return cls(str(d["arm"]), str(d["mode"]), str(d["phase"]), int(d["rep"]))


@dataclass(frozen=True)
class Session:
    """Consecutive steps of one arm in one mode: the serve target is started once for them."""

    arm: ArmSpec
    mode: str
    steps: tuple[StepKey, ...]


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

    _name_ok = field_validator("name")(_check_slug)

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


@dataclass(frozen=True)
class LoadedPlan:
    """A validated plan and the directory its relative paths are resolved against."""

    plan: Plan
    source: Path
    base_dir: Path

    def resolve(self, relative: str) -> Path:
        """A plan-relative path made absolute."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def serve_command(self, python: str = sys.executable) -> list[str]:
        """A process target's argv with placeholders still in it ({host} {port} {env_dir})."""
        serve = self.plan.serve
        if not isinstance(serve, ProcessServe):
            raise TypeError(f"serve_command is for process targets, not {serve.kind}")
        if serve.command:
            plan_dir = str(self.base_dir)
            return [part.replace("{python}", python).replace("{plan_dir}", plan_dir) for part in serve.command]
        return [
            python, "-m", "engine.server",
            "--config", str(self.resolve(serve.engine_config or "")),
            "--host", "{host}", "--port", "{port}", "--env-dir", "{env_dir}",
        ]  # fmt: skip


def load_plan(path: Path, base_dir: Path | None = None) -> LoadedPlan:
    """Load and validate a plan file; raises ConfigFileError naming file, line and field.

    `base_dir` overrides where relative paths point (a resumed run's copy of the plan keeps
    resolving against the original plan's directory).
    """
    plan = load_toml_model(path, Plan)
    loaded = LoadedPlan(plan, path.resolve(), (base_dir or path.resolve().parent))
    problems = []
    serve = plan.serve
    if isinstance(serve, ProcessServe) and serve.engine_config and not loaded.resolve(serve.engine_config).is_file():
        problems.append(f"{path}: serve.engine_config: {loaded.resolve(serve.engine_config)} does not exist")
    for i, phase in enumerate(plan.phases):
        for field, relative in phase_files(phase).items():
            if not loaded.resolve(relative).is_file():
                hint = ' (use "builtin" or a dataset file)' if field == "dataset" else ""
                problems.append(f"{path}: phases[{i}].{field}: {loaded.resolve(relative)} does not exist{hint}")
    if problems:
        raise ConfigFileError(path, problems)
    return loaded
