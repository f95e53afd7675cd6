"""The host's known-OOM record: every serve target the guard killed or the kernel OOM-killed, kept across runs.

One JSON line per incident in `<state dir>/known-ooms.jsonl` (`GB10_STATE_DIR`, else
`$XDG_STATE_HOME/gb10-console`, else `~/.local/state/gb10-console`): when and on which host, the run,
arm and mode, the cause (`guard`: the memory watchdog's KILL; `kernel`: the container's cgroup counted
OOM kills, or the target ended "OOM-killed"), the serve target's identity (the process command with
its placeholders, or the image and command), the arm's env (secrets redacted, plus a hash of the
exact values), the floors, and the guard's MemAvailable records from a minute before to ten seconds
after.

`record_run_ooms` reads a run directory's events and appends what is not recorded yet (runners call
it when a session ends and when one starts, so a runner that died is caught up). `known_oom_matches`
says which (arm, mode) sessions of a plan would start a target with the same identity and env on this
host: `validate` and `run` refuse such a plan without `--force`.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from runners.plan.load import LoadedPlan
from runners.plan.serve_spec import DockerServe, ExternalServe
from runners.run.files import JsonlWriter, read_jsonl
from runners.run.redact import env_policy, redact_argv, redact_env
from runners.run.rundir import RunDir
from runners.serve.runtime import OOM_KILLED

STATE_DIR_VAR = "GB10_STATE_DIR"
RECORD_NAME = "known-ooms.jsonl"
TRACE_BEFORE_S = 60.0
TRACE_AFTER_S = 10.0
SAME_INCIDENT_S = 60.0  # events of one arm and mode this close together are one incident


def state_dir() -> Path:
    """Where gb10-console keeps host-level state (created by the first write)."""
    explicit = os.environ.get(STATE_DIR_VAR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state") / "gb10-console"


def record_path() -> Path:
    """The host's known-OOM record file."""
    return state_dir() / RECORD_NAME


def env_hash(env: dict[str, str]) -> str:
    """A hash of the exact env (values included, order ignored): records match on it, never on redacted text."""
    return hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()[:16]


def serve_identity(loaded: LoadedPlan) -> str | None:
    """What starts the plan's target, as text: the process command with placeholders, or the image and
    command; None for an external server (not ours: never killed by the guard, never recorded)."""
    serve = loaded.plan.serve
    if isinstance(serve, ExternalServe):
        return None
    if isinstance(serve, DockerServe):
        entry = " ".join(redact_argv(serve.entrypoint)) + " " if serve.entrypoint else ""
        return f"docker {serve.image} {entry}{' '.join(redact_argv(serve.command))}".strip()
    return " ".join(redact_argv(loaded.serve_command(python="{python}")))


@dataclass(frozen=True)
class OomMatch:
    """A plan's (arm, mode) session that would start a target recorded as OOM-killed on this host."""

    arm: str
    mode: str
    record: dict

    def message(self) -> str:
        """One line for people: which arm, what happened to it before, where the record is."""
        r = self.record
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.get("t", 0)))
        env = ", ".join(f"{k}={v}" for k, v in (r.get("env") or {}).items()) or "no env"
        return (
            f"arm {self.arm} ({self.mode}, {env}) matches a known OOM on this host: {r.get('cause_text')} at "
            f"{when} in run {r.get('run_id')} ({r.get('run_dir')}); record {record_path()}"
        )


def read_records(path: Path | None = None) -> list[dict]:
    """Every complete record (a torn or garbled line is skipped); none when the file does not exist."""
    return [r for r in read_jsonl(path or record_path()) if isinstance(r, dict) and r.get("v") == 1]


def known_oom_matches(loaded: LoadedPlan, records: list[dict] | None = None, host: str | None = None) -> list[OomMatch]:
    """The plan's sessions whose target identity and env match a record of this host (newest record each)."""
    identity = serve_identity(loaded)
    if identity is None:
        return []
    host = host or socket.gethostname()
    records = read_records() if records is None else records
    out = []
    for session in loaded.plan.sessions():
        digest = env_hash(loaded.plan.session_env(session.arm.name, session.mode))
        same = [r for r in records if r.get("host") == host and r.get("identity") == identity
                and r.get("env_hash") == digest]  # fmt: skip
        if same:
            out.append(OomMatch(session.arm.name, session.mode, max(same, key=lambda r: r.get("t", 0))))
    return out


@dataclass(frozen=True)
class _Incident:
    t: float
    arm: str
    mode: str
    cause: str  # guard | kernel
    text: str


def _incidents(events: list[dict]) -> list[_Incident]:
    """The run's OOM incidents in time order, events of one target's end folded into one."""
    found: list[_Incident] = []
    for e in events:
        kind, t = e.get("type"), e.get("t")
        if not isinstance(t, int | float):
            continue
        step = e.get("step") if isinstance(e.get("step"), dict) else {}
        if kind == "guard_ended_target" and e.get("kill"):
            target = e.get("target") or {}
            found.append(_Incident(t, str(target.get("arm")), str(target.get("mode")), "guard", str(e.get("cause"))))
        elif kind == "serve_oom":
            text = f"the kernel OOM-killed {e.get('new_oom_kills')} process(es) in the target's cgroup"
            found.append(_Incident(t, str(step.get("arm")), str(step.get("mode")), "kernel", text))
        elif kind in ("step_failed", "serve_failed") and OOM_KILLED in str(e.get("reason", "")):
            arm, mode = (step.get("arm"), step.get("mode")) if kind == "step_failed" else (e.get("arm"), e.get("mode"))
            found.append(_Incident(t, str(arm), str(mode), "kernel", f"the target was {OOM_KILLED}"))
    merged: list[_Incident] = []
    for incident in found:
        last = next((m for m in reversed(merged) if (m.arm, m.mode) == (incident.arm, incident.mode)), None)
        if last is not None and incident.t - last.t < SAME_INCIDENT_S:
            if incident.cause == "guard" and last.cause != "guard":  # the guard's kill explains the death
                merged[merged.index(last)] = _Incident(last.t, last.arm, last.mode, "guard", incident.text)
            continue
        merged.append(incident)
    return merged


def _memory_trace(run: RunDir, t: float) -> list[dict]:
    keep = ("t", "level", "available_gib", "fill_gib_s")
    return [
        {k: r.get(k) for k in keep}
        for r in read_jsonl(run.watchdog_jsonl)
        if isinstance(r.get("t"), int | float) and t - TRACE_BEFORE_S <= r["t"] <= t + TRACE_AFTER_S
    ]


def _floors(events: list[dict], t: float) -> dict | None:
    started = [e for e in events if e.get("type") == "guard_started" and e.get("t", 0) <= t]
    return started[-1].get("floors_gib") if started else None


def record_run_ooms(run: RunDir, loaded: LoadedPlan, path: Path | None = None) -> list[dict]:
    """Append the run's OOM incidents that the record lacks; returns the records written (may raise OSError)."""
    identity = serve_identity(loaded)
    if identity is None:
        return []
    events = read_jsonl(run.events)
    incidents = [i for i in _incidents(events) if i.arm in {a.name for a in loaded.plan.arms}]
    if not incidents:
        return []
    path = path or record_path()
    run_id, host = run.info()["run_id"], socket.gethostname()
    new = []
    policy = env_policy(loaded.plan)  # the arm's keys under test shown, everything else hidden
    for i in incidents:
        env = loaded.plan.session_env(i.arm, i.mode)
        new.append({
            "v": 1, "t": i.t, "host": host, "run_id": run_id, "run_dir": str(run.root), "plan": loaded.plan.name,
            "arm": i.arm, "mode": i.mode, "cause": i.cause, "cause_text": i.text, "identity": identity,
            "env": redact_env(env, policy), "env_hash": env_hash(env), "floors_gib": _floors(events, i.t),
            "memory": _memory_trace(run, i.t), "recorded_at": time.time(),
        })  # fmt: skip
    return _append_new(path, new)


def _append_new(path: Path, records: list[dict]) -> list[dict]:
    """Append the records not yet in `path` (same run, arm and mode at the same time). One run's records come
    from its one runner (the run's lock), so reading then appending cannot race with itself; a torn last line
    is set aside into `<path>.torn` first, as every JSONL appender does."""
    seen = {(r.get("run_id"), r.get("arm"), r.get("mode"), r.get("t")) for r in read_records(path)}
    fresh = [r for r in records if (r["run_id"], r["arm"], r["mode"], r["t"]) not in seen]
    if fresh:
        with JsonlWriter(path) as writer:
            for record in fresh:
                writer.append(record, sync=True)
    return fresh
