"""Secrets never reach evidence: an env value is shown only when it is known to be harmless.

The one decision is `EnvPolicy.value` (built from a plan by `env_policy`); everything the runner, the
report and the console write or show about an environment goes through it (effective.json, events,
the final `docker inspect`, provenance, summary.md/json, the console's panels, `validate`, compare's
plan diff). A value is shown only when:

- its key is one of the arm keys under test: set in some arm's env with values that differ between
  arms (a key one arm sets and another does not differs too), written in the plan as a literal; or
- its key is on `HARMLESS_NAMES` / `HARMLESS_PREFIXES` (below);

and never when its name looks like a credential (`SECRET_NAME`), the plan declares it in its
top-level `secret = [...]`, or the plan takes it `{ from_env = "NAME" }`. Everything else reads
`***redacted*** sha256:<12 hex>`: the prefix lets two runs (or the expected and reported env) be
compared without the value. The ENV sentinel keeps the real values (it is how they reach the server), in the
run's private runtime directory outside the run directory (`runners/run/runtime_dir.py`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from runners.plan.fields import FromEnv, HeldValue, PlanEnvValue
from runners.plan.model import Plan

SECRET_NAME = re.compile(
    r"(TOKEN|SECRET|PASSW(OR)?D|API[-_]?KEY|ACCESS[-_]?KEY|PRIVATE[-_]?KEY|CREDENTIAL|AUTH|_KEY$|^KEY$)", re.I
)
REDACTED = "***redacted***"
SHA_CHARS = 12  # hex digits of a redacted value's sha256 that are shown: enough to tell values apart

# Names whose values are shown even when no arm varies them: they tune the target or say which devices
# and threads it uses, and a value of theirs is never a credential. VLLM_* and CUTE_* are the vLLM and
# kernel knobs a soak turns; a credential among them (VLLM_API_KEY) is caught by SECRET_NAME first.
HARMLESS_NAMES = frozenset({
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_LAUNCH_BLOCKING", "NVIDIA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TOKENIZERS_PARALLELISM", "PYTORCH_CUDA_ALLOC_CONF",
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_ENABLE_HF_TRANSFER",
    "NCCL_DEBUG", "TORCH_CUDA_ARCH_LIST", "PYTHONUNBUFFERED", "PYTHONPATH", "PATH", "LANG", "LC_ALL", "TZ",
})  # fmt: skip
HARMLESS_PREFIXES = ("VLLM_", "CUTE_", "GB10_")


def is_secret(name: str) -> bool:
    """True for names like HF_TOKEN, OPENAI_API_KEY, AWS_SECRET_ACCESS_KEY, DB_PASSWORD, NGC_KEY."""
    return bool(SECRET_NAME.search(name))


def sha_prefix(value: str) -> str:
    """`sha256:<12 hex>` of a value: what is recorded of a value that is never written."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:SHA_CHARS]


def redacted(value: str) -> str:
    """The one spelling of a hidden value: `***redacted*** sha256:ab12cd34ef56`."""
    return f"{REDACTED} {sha_prefix(value)}"


def _harmless(name: str) -> bool:
    return name in HARMLESS_NAMES or name.startswith(HARMLESS_PREFIXES)


@dataclass(frozen=True)
class EnvPolicy:
    """Which env keys may be shown: the arm keys under test (`varied`) and the plan's declared secrets."""

    varied: frozenset[str] = frozenset()
    secret: frozenset[str] = frozenset()

    def shows(self, name: str) -> bool:
        """True when a literal value of `name` may be written or shown."""
        if is_secret(name) or name in self.secret:
            return False
        return name in self.varied or _harmless(name)

    def value(self, name: str, value: PlanEnvValue | None) -> str:
        """What may be written of `name = value`: the value itself, `***redacted*** sha256:…` (with `from_env NAME`
        for a value read from the environment), or `***redacted***` alone for a value not known (None)."""
        if value is None:
            return REDACTED
        if isinstance(value, FromEnv):
            return f"{REDACTED} from_env {value.from_env}"
        if isinstance(value, HeldValue):
            return f"{REDACTED} {value.redacted}"
        if value.startswith(REDACTED):
            return value  # already redacted where it was recorded
        return value if self.shows(name) else redacted(value)

    def env(self, env: Mapping[str, PlanEnvValue | None] | None) -> dict[str, str] | None:
        """A copy of `env` with every value as `value` shows it (None stays None)."""
        if env is None:
            return None
        return {k: self.value(k, v) for k, v in env.items()}

    def env_list(self, items: list[str]) -> list[str]:
        """`KEY=VALUE` strings (Docker's Config.Env) with hidden values replaced."""
        out = []
        for item in items:
            key, sep, value = item.partition("=")
            out.append(f"{key}={self.value(key, value)}" if sep else item)
        return out

    def text(self, env: Mapping[str, PlanEnvValue]) -> str:
        """`K=V K=V` for one line of a table or a log."""
        return " ".join(f"{k}={v}" for k, v in (self.env(env) or {}).items())


NO_PLAN = EnvPolicy()  # where no plan is known: only the harmless names are shown


def env_policy(plan: Plan) -> EnvPolicy:
    """The policy of `plan`: its arm keys under test (literal values that differ between arms) and `secret`."""
    keys = {k for arm in plan.arms for k in arm.env}
    varied = frozenset(
        k for k in keys
        if not any(isinstance(arm.env.get(k), (FromEnv, HeldValue)) for arm in plan.arms)
        and len({arm.env.get(k) for arm in plan.arms}) > 1
    )  # fmt: skip
    return EnvPolicy(varied=varied, secret=frozenset(plan.secret))


def redact_env(env: Mapping[str, PlanEnvValue | None] | None, policy: EnvPolicy = NO_PLAN) -> dict[str, str] | None:
    """A copy of `env` with hidden values replaced (`policy.env`)."""
    return policy.env(env)


def redact_env_list(items: list[str], policy: EnvPolicy = NO_PLAN) -> list[str]:
    """`KEY=VALUE` strings (Docker's Config.Env) with hidden values replaced (`policy.env_list`)."""
    return policy.env_list(items)


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with the values of secret-looking options (`--api-key X`, `--hf-token=X`) replaced."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        name, sep, _ = arg.partition("=")
        if arg.startswith("-") and is_secret(name.replace("-", "_")):
            if sep:
                out.append(f"{name}={REDACTED}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(arg)
    return out


def redact_inspect(data: dict, policy: EnvPolicy = NO_PLAN) -> dict:
    """A `docker inspect` body with hidden env values and command options replaced (it goes into the run dir)."""
    config = data.get("Config")
    if isinstance(config, dict):
        config = dict(config)
        if isinstance(config.get("Env"), list):
            config["Env"] = policy.env_list([str(e) for e in config["Env"]])
        if isinstance(config.get("Cmd"), list):
            config["Cmd"] = redact_argv([str(a) for a in config["Cmd"]])
        data = {**data, "Config": config}
    if isinstance(data.get("Args"), list):
        data = {**data, "Args": redact_argv([str(a) for a in data["Args"]])}
    return data
