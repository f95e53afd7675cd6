"""Run or resume a soak in a run directory, in this process or as a detached runner process.

`python -m runners.execute RUN_DIR` (runners/execute.py) is the detached runner: started in its own session by the
console, it outlives the terminal and the UI, logs to runner.log, and exits 0 (finished),
1 (failed), 2 (bad input) or 3 (aborted, resumable).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from engine.config_file import ConfigFileError
from runners import event_loop
from runners.datasets.plan_data import data_records
from runners.evidence.oom_record import known_oom_matches, record_path, record_run_ooms
from runners.plan.load import LoadedPlan
from runners.plan.preflight import preflight_warnings
from runners.plan.serve_spec import DockerServe
from runners.plan.steps import StepKey
from runners.replay.dispatch_gate import DispatchGate
from runners.report.summary import write_report
from runners.run.control import log_refused, pause_requested, request_continue, take_abort_request, watch_control
from runners.run.event_types import (
    AbortRequested,
    ControlCleared,
    ControlRefused,
    DispatchPaused,
    DispatchResumed,
    GuardLost,
    KnownOomMatched,
    OomRecorded,
    OomRecordFailed,
    PreflightWarning,
    RunDirUnwritable,
    SummaryFailed,
    SummaryWritten,
)
from runners.run.events import EventLog, Listener
from runners.run.files import apply_run_umask
from runners.run.incident_slot import clear_incident, prepare_slot, read_incident
from runners.run.provenance import end_session, record_datasets, start_session
from runners.run.repair import Repair, repair_for_session
from runners.run.rundir import RunDir, RunDirError, RunnerLock
from runners.run.runs import RUNNER_MODULE, load_run_plan, open_run
from runners.run.runtime_dir import RunRuntimeDir, RuntimeDirError, open_run_runtime, sweep_stale
from runners.serve.orphans import sweep_at_start
from runners.soak.ledger import SoakResult
from runners.soak.session import SoakSession
from runners.watchdog.link import GuardError, GuardLink


async def execute(run: RunDir, listeners: Iterable[Listener] = (), argv: list[str] | None = None) -> SoakResult:
    """Run every step of `run` not yet DONE. SIGINT/SIGTERM and control/abort.json abort cleanly.

    Damaged files are repaired first and said (`run_dir_repaired`, runners/run/repair.py). A finished run with
    every step DONE is left as it is: nothing runs, its state, times and events stay (`nothing_to_do`).
    Raises RunDirError when a live runner holds the run or run.json is damaged, ConfigFileError for a bad plan copy.
    Everything is written under the run's umask (`apply_run_umask`: 027 unless $GB10_UMASK says otherwise).
    """
    apply_run_umask()
    lock = RunnerLock(run)
    lock.acquire()
    try:
        loaded = load_run_plan(run)
        steps = loaded.plan.steps()
        repairs = repair_for_session(run, steps)
        if lock.took_over:
            repairs.insert(0, Repair("runner.lock", "stale_lock_taken_over", lock.took_over))
        events = EventLog(run.events)
        for listener in listeners:
            events.subscribe(listener)
        for repair in repairs:
            events.emit(repair.event())
        _carry_incident(run, events)
        done = _nothing_to_do(run, steps)
        if done is not None:
            events.close()
            return done
        stale = take_abort_request(run)
        if stale:
            events.emit(ControlCleared(stale))
        stale_pause = pause_requested(run)
        if stale_pause is not None:  # a new session dispatches; the operator can pause it again
            request_continue(run)
            events.emit(ControlCleared({"pause": stale_pause}))
        abort = asyncio.Event()
        gate = DispatchGate()

        def on_pause(request: dict | None) -> None:
            if request is not None and gate.pause():
                events.emit(DispatchPaused(request.get("by", "?")))
            elif request is None and gate.paused:
                events.emit(DispatchResumed(round(gate.resume() or 0.0, 3)))

        def on_abort(request: dict) -> None:
            if not abort.is_set():
                events.emit(AbortRequested(request.get("by", "?"), request.get("reason", "")))
                abort.set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_abort, {"by": "signal", "reason": sig.name})
        start_session(run, argv if argv is not None else sys.argv)
        serve = loaded.plan.serve
        events.emit(await sweep_at_start(serve.socket if isinstance(serve, DockerServe) else None))
        private, private_problem = _open_private(run)
        for finding in preflight_warnings(loaded.plan):  # profiler settings that would lose a trace
            events.emit(PreflightWarning(finding.topic, finding.message))
        await _record_ooms(run, loaded, events)  # catch up on a session whose runner died
        await _known_ooms(loaded, events)

        def on_refused(line: str) -> None:  # another uid's control file: removed unread, said in both places
            log_refused(line)
            events.emit(ControlRefused(line))

        watcher = asyncio.create_task(watch_control(run, on_abort, on_pause, on_refused))
        guard = GuardLink(run, loaded.plan.watchdog)
        soak = SoakSession(run, loaded, events, abort, guard=guard, gate=gate, private=private)

        def on_guard_lost(reason: str) -> None:  # fail closed: no measuring without a watchdog
            events.emit(GuardLost(reason))
            soak.fail_closed(f"{reason}; the runner stopped the target (fail closed); `--resume` continues")
            abort.set()

        tasks: list[asyncio.Task] = []
        try:
            datasets, unreadable = await asyncio.to_thread(data_records, loaded)  # hashes what the steps will read
            record_datasets(run, datasets)
            if private_problem:
                result = soak.ended_early(private_problem)
            elif unreadable:  # before any target starts
                result = soak.ended_early("a dataset cannot be read: " + "; ".join(unreadable))
            else:
                guard.start()
                await guard.wait_up()
                tasks = [asyncio.create_task(guard.beat_forever()), asyncio.create_task(guard.watch(on_guard_lost))]
                result = await soak.run()
        except GuardError as exc:
            result = soak.ended_early(f"cannot start the memory guard: {exc}")
        except Exception as exc:  # a runner bug or a failing disk: record it, never leave "running"
            result = soak.crashed(exc)
        finally:
            for task in (watcher, *tasks):
                task.cancel()
            await guard.stop()
            if private is not None:  # the run's real values (ENV sentinels, plugin reports) end with the session
                private.remove()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        try:  # evidence beyond the run's own state: a full disk must not turn the result into a traceback
            await _record_ooms(run, loaded, events)
            _write_evidence(run, events)
            end_session(run, result.status, result.exit_code)
            events.close()
        except OSError as exc:
            print(f"runner: could not finish writing {run.root}: {exc}", file=sys.stderr)
        return result
    finally:
        lock.release()


def _open_private(run: RunDir) -> tuple[RunRuntimeDir | None, str | None]:
    """The run's private runtime directory (after removing those of this user's runners that are gone), or why
    it cannot be made."""
    try:
        sweep_stale()
        return open_run_runtime(run.info()["run_id"]), None
    except (RuntimeDirError, OSError) as exc:
        return None, f"cannot make the run's private runtime directory (for the ENV sentinel): {exc}"


def _carry_incident(run: RunDir, events: EventLog) -> None:
    """An earlier runner's disk-full incident, kept in incident.slot, into this session's events (then the slot is
    blanked); the slot is allocated for this session's own (best effort: a full disk fails the session anyway)."""
    incident = read_incident(run)
    if incident is not None:
        at = incident.get("t")
        step = incident.get("step")
        events.emit(RunDirUnwritable(incident["reason"], step if isinstance(step, dict) else None,
                                     at if isinstance(at, (int, float)) else None))  # fmt: skip
        clear_incident(run)
    with contextlib.suppress(OSError):
        prepare_slot(run)


async def _record_ooms(run: RunDir, loaded: LoadedPlan, events: EventLog) -> None:
    """Add the run's OOM-killed targets to the host's known-OOM record; a record that fails is an event."""
    try:
        written = await asyncio.to_thread(record_run_ooms, run, loaded)
    except OSError as exc:
        events.emit(OomRecordFailed(f"{record_path()}: {exc.strerror or exc}"))
        return
    for record in written:
        events.emit(OomRecorded(record["arm"], record["mode"], record["cause"], record["cause_text"],
                                str(record_path())))  # fmt: skip


async def _known_ooms(loaded: LoadedPlan, events: EventLog) -> None:
    """An event for each session that matches the known-OOM record (the CLI refused it without --force)."""
    try:
        matches = await asyncio.to_thread(known_oom_matches, loaded)
    except OSError as exc:
        events.emit(OomRecordFailed(f"{record_path()} cannot be read: {exc.strerror or exc}"))
        return
    for match in matches:
        events.emit(KnownOomMatched(match.arm, match.mode, match.message()))


def _nothing_to_do(run: RunDir, steps: list[StepKey]) -> SoakResult | None:
    """The result of executing a finished run whose steps are all DONE again (None when there is work)."""
    state = run.read_state()
    if state is None or state.status != "finished" or not all(run.is_done(s) for s in steps):
        return None
    ended = state.ended_at
    when = time.strftime(" at %Y-%m-%d %H:%M:%S", time.localtime(ended)) if isinstance(ended, (int, float)) else ""
    reason = (
        f"nothing to do: all {len(steps)} steps are DONE and the run finished{when}; nothing was run or changed "
        f"(to measure again, start a new run of {run.plan_toml})"
    )
    return SoakResult("finished", reason, len(steps), 0, nothing_to_do=True)


def _write_evidence(run: RunDir, events: EventLog) -> None:
    """summary.md, summary.json and plots; a report that cannot be made is an event, never a lost result."""
    try:
        outcome = write_report(run.root)
    except Exception as exc:  # the run's own files stand; `gb10-console report` can retry later
        print(f"runner: the report could not be written: {type(exc).__name__}: {exc}", file=sys.stderr)
        with contextlib.suppress(OSError):
            events.emit(SummaryFailed(f"{type(exc).__name__}: {exc}"))
        return
    events.emit(SummaryWritten(str(run.summary_md), [str(p) for p in outcome.plots], outcome.gates.verdicts))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the detached runner."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m runners.execute RUN_DIR", file=sys.stderr)
        return 2
    try:
        run = open_run(Path(args[0]))
        result = event_loop.run(execute(run, argv=[sys.executable, "-m", RUNNER_MODULE, *args]))
    except (RunDirError, ConfigFileError) as exc:
        print(f"runner: {exc}", file=sys.stderr)
        return 2
    print(f"runner: {result.status}: {result.reason}", flush=True)
    return result.exit_code


if __name__ == "__main__":  # the usual name is `python -m runners.execute` (runners/execute.py)
    sys.exit(main())
