"""Secrets never reach evidence: env values whose names look like credentials are replaced.

Applied to everything the runner writes about an environment (effective.json, events, the final
`docker inspect`, provenance). The ENV sentinel itself keeps the real values: it is how they reach
the server.
"""

from __future__ import annotations

import re

SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSW(OR)?D|API[-_]?KEY|ACCESS[-_]?KEY|PRIVATE[-_]?KEY|CREDENTIAL|AUTH)", re.I)
REDACTED = "***redacted***"


def is_secret(name: str) -> bool:
    """True for names like HF_TOKEN, OPENAI_API_KEY, AWS_SECRET_ACCESS_KEY, DB_PASSWORD."""
    return bool(SECRET_NAME.search(name))


def redact_env(env: dict[str, str] | None) -> dict[str, str] | None:
    """A copy of `env` with secret values replaced."""
    if env is None:
        return None
    return {k: (REDACTED if is_secret(k) else v) for k, v in env.items()}


def redact_env_list(items: list[str]) -> list[str]:
    """`KEY=VALUE` strings (Docker's Config.Env) with secret values replaced."""
    out = []
    for item in items:
        key, sep, _ = item.partition("=")
        out.append(f"{key}={REDACTED}" if sep and is_secret(key) else item)
    return out


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


def redact_inspect(data: dict) -> dict:
    """A `docker inspect` body with secret env values and command options replaced (it goes into the run dir)."""
    config = data.get("Config")
    if isinstance(config, dict):
        config = dict(config)
        if isinstance(config.get("Env"), list):
            config["Env"] = redact_env_list([str(e) for e in config["Env"]])
        if isinstance(config.get("Cmd"), list):
            config["Cmd"] = redact_argv([str(a) for a in config["Cmd"]])
        data = {**data, "Config": config}
    if isinstance(data.get("Args"), list):
        data = {**data, "Args": redact_argv([str(a) for a in data["Args"]])}
    return data
