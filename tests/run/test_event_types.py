"""The one definition of events: lines as written, the check of lines read back, reading them back typed, the docs
table, the readers."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import orjson
import pytest

from console.views.run_view import RunView
from console.views.watchdog_view import WatchdogView
from runners.plan.steps import StepKey
from runners.run.event_types import (
    ABSENT,
    DURABLE,
    EVENT_TYPES,
    EnvVerified,
    Event,
    GuardEndedTarget,
    GuardStarted,
    LoggedEvent,
    ProfileLost,
    StepFinished,
    StepStarted,
    UnreadableEvent,
    check_event,
    markdown_table,
    parse_event,
)
from runners.run.events import EventLog, event_line
from runners.run.files import read_jsonl
from tests.support.events import undefined_events
from tests.support.project import ROOT

STEP = StepKey("a", "primary", "replay", 0)
STEP_LINE = STEP.as_dict()
# what was fsynced before the types were written down: durability must not change silently
DURABLE_BEFORE = {
    "run_started", "run_finished", "step_finished", "step_failed", "step_aborted", "dispatch_paused",
    "dispatch_resumed", "serve_failed", "env_mismatch", "kernel_checks_failed", "watchdog_action", "guard_lost",
    "guard_ended_target", "run_dir_repaired", "oom_recorded",  # issue 22: a host-level record was written
    "run_dir_unwritable",  # issue 31: an incident carried out of incident.slot, which is then blanked
}  # fmt: skip


def test_a_line_has_the_envelope_the_fields_and_the_step_as_an_object(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    line = log.emit(StepStarted(STEP, "sharegpt", 6, 3, open_loop=False))
    log.close()
    assert read_jsonl(tmp_path / "events.jsonl") == [line]
    assert {k: v for k, v in line.items() if k != "t"} == {
        "v": 1, "type": "step_started", "step": {"arm": "a", "mode": "primary", "phase": "replay", "rep": 0},
        "kind": "sharegpt", "requests": 6, "concurrency": 3, "open_loop": False,
    }  # fmt: skip
    assert check_event(line) == []


def test_optional_fields_are_left_out_when_not_given_and_written_when_given_even_as_none() -> None:
    assert StepFinished(STEP, {"ok": 1}).fields() == {"step": STEP.as_dict(), "stats": {"ok": 1}}
    assert StepFinished(STEP, {}, gsm8k={"correct": 3}).fields()["gsm8k"] == {"correct": 3}
    started = GuardStarted(1, 2, {"warn": 16}, mlocked=False, oom_score_adj=None, mlock_error="EPERM").fields()
    assert (
        started["oom_score_adj"] is None and started["mlock_error"] == "EPERM" and "oom_score_adj_error" not in started
    )
    graceful = GuardEndedTarget("the runner is gone", False, "stopped", {}, 0.1).fields()
    assert "available_gib" not in graceful  # a graceful stop has no memory numbers
    killed = GuardEndedTarget("memory KILL", True, "killed", {}, 0.1, reason="r", available_gib=None,
                              fill_gib_s=None, seconds_to_kill_floor=None, restart_allowed=False).fields()  # fmt: skip
    assert killed["available_gib"] is None and killed["seconds_to_kill_floor"] is None  # unknown: null, not absent


def test_an_undefined_field_cannot_be_emitted() -> None:
    with pytest.raises(TypeError):
        StepStarted(STEP, "sharegpt", 6, 3, open_loop=False, colour="red")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("line", "problems"),
    [
        ({"v": 1, "t": 0, "type": "nope"}, ["unknown event type 'nope'"]),
        ({"v": 1, "t": 0}, ["unknown event type None"]),
        ({"v": 1, "t": 0, "type": "step_failed", "step": STEP_LINE, "reason": "x", "why": "y"},
         ["step_failed: field 'why' is not defined"]),
        ({"v": 1, "t": 0, "type": "step_failed", "step": STEP_LINE}, ["step_failed: field 'reason' is missing"]),
        ({"v": 1, "t": 0, "type": "step_finished", "step": STEP_LINE, "stats": {}}, []),
        ({"v": 1, "t": 0, "type": "step_failed", "step": {}, "reason": 3},
         ["step_failed: field 'step' is not a step {arm, mode, phase, rep}: {}",
          "step_failed: field 'reason' is not str: 3"]),
        ({"v": 1, "t": 0, "type": "env_verified", "arm": "a", "reported": {}, "unverified_keys": ["K", 1],
          "where": None}, ["env_verified: field 'unverified_keys' is not list[str]: ['K', 1]"]),
        ({"v": 1, "t": 0, "type": "dispatch_resumed", "paused_s": True},
         ["dispatch_resumed: field 'paused_s' is not float: True"]),
    ],
)  # fmt: skip
def test_check_event(line: dict, problems: list[str]) -> None:
    assert check_event(line) == problems


def test_durability_is_what_it_was() -> None:
    assert set(DURABLE) == DURABLE_BEFORE


def test_every_type_says_what_it_means_and_its_fields_are_plain_names() -> None:
    for type_, cls in EVENT_TYPES.items():
        assert re.fullmatch(r"[a-z_]+", type_), type_
        assert cls.__doc__ and "dataclass" not in cls.__doc__.lower(), f"{cls.__name__} needs a docstring"
        assert all(not f.name.startswith("_") for f in dataclasses.fields(cls))


def test_the_docs_event_table_is_the_generated_one() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    match = re.search(r"<!-- event table:[^\n]*-->\n(.*?)\n<!-- end of event table -->", text, re.S)
    assert match, "docs/architecture.md has no generated event table"
    assert match.group(1) == markdown_table(), "regenerate it: python -m runners.run.event_types"


@pytest.mark.parametrize("view", [RunView, WatchdogView])
def test_every_event_a_view_folds_is_a_defined_type_and_every_handler_is_in_its_table(view: type) -> None:
    """Handlers are picked by event class, never by a type's name: a table keyed by anything but a defined event
    class, or a `_on_` handler no table names, fails here."""
    table = view.HANDLERS if view is RunView else view.EVENT_FOLDS
    assert set(table) <= set(EVENT_TYPES.values()), sorted(map(repr, set(table) - set(EVENT_TYPES.values())))
    handlers = {getattr(view, name) for name in dir(view) if name.startswith("_on_")}
    assert handlers == set(table.values()), sorted(h.__name__ for h in handlers ^ set(table.values()))
    for cls, handler in table.items():
        assert handler.__name__ == f"_on_{cls.TYPE}", (cls, handler)


def test_a_line_reads_back_as_the_event_that_wrote_it_with_its_time() -> None:
    events = [
        StepStarted(STEP, "sharegpt", 6, None, open_loop=True),
        StepFinished(STEP, {"ok": 1}, pause=None),
        GuardStarted(1, 2, {"warn": 16}, mlocked=False, oom_score_adj=None, mlock_error="EPERM"),
        ProfileLost(STEP, "lost", "deadline", None, 2.5, ["a.json"]),
        EnvVerified("a", {"K": "1"}, [], where="EngineCore pid 7"),
    ]
    for event in events:
        assert parse_event(event_line(event, 12.5)) == LoggedEvent(12.5, event)
    read = parse_event({"v": 1, "t": 3, "type": "dispatch_resumed", "paused_s": 4, "from_the_future": "x"})
    assert read == LoggedEvent(3.0, EVENT_TYPES["dispatch_resumed"](4.0))  # an int is a float; unknown fields ignored
    assert isinstance(read.event.paused_s, float)


def test_a_missing_field_takes_its_default_or_null_else_the_line_is_unreadable() -> None:
    """Older lines: an optional field reads as not given, a defaulted one as its default, a nullable one left out
    (before a review fix, null optionals were left out) as None; any other missing field makes it unreadable."""
    older = parse_event({"v": 1, "t": 1, "type": "guard_started", "pid": 7, "runner_pid": 6, "floors_gib": {},
                         "mlocked": True})  # fmt: skip
    assert isinstance(older, LoggedEvent) and older.event == GuardStarted(7, 6, {}, True, None)
    assert older.event.mlock_error is ABSENT
    verified = parse_event({"v": 1, "t": 1, "type": "env_verified", "arm": "a", "reported": {}, "unverified_keys": []})
    assert isinstance(verified, LoggedEvent) and verified.event.where is None
    lost = parse_event({"v": 1, "t": 1, "type": "profile_lost", "step": STEP_LINE, "status": "s", "reason": "r",
                        "trace": None, "stop_s": None})  # fmt: skip
    assert isinstance(lost, LoggedEvent) and lost.event.files == []
    planned = parse_event({"v": 1, "t": 1, "type": "step_started", "step": STEP_LINE, "planned": 6})
    assert planned == UnreadableEvent(
        "step_started",
        1.0,
        (
            "step_started: field 'kind' is missing",
            "step_started: field 'requests' is missing",
            "step_started: field 'open_loop' is missing",
        ),
    )  # fmt: skip  (concurrency may be null: read as None)
    assert planned.known


@pytest.mark.parametrize(
    ("line", "read"),
    [
        ("not an object", UnreadableEvent(None, None, ("not a JSON object: 'not an object'",))),
        ({"v": 1, "t": 5, "type": "note"}, UnreadableEvent("note", 5.0, ("unknown event type 'note'",))),
        ({"v": 1, "type": "restart_allowed"}, UnreadableEvent("restart_allowed", None, (
            "restart_allowed: t is not a time: None",))),
        ({"v": 1, "t": float("nan"), "type": "restart_allowed"}, UnreadableEvent("restart_allowed", None, (
            "restart_allowed: t is not a time: nan",))),
        ({"v": 1, "t": 2, "type": "step_aborted", "step": {"arm": None}, "completed": "3"},
         UnreadableEvent("step_aborted", 2.0, (
             "step_aborted: field 'step' is not a step {arm, mode, phase, rep}: {'arm': None}",
             "step_aborted: field 'completed' is not int: '3'"))),
    ],
)  # fmt: skip
def test_what_is_not_an_event_reads_as_unreadable_and_never_raises(line: object, read: UnreadableEvent) -> None:
    assert parse_event(line) == read
    assert read.known == (read.type in EVENT_TYPES)


def test_every_field_type_has_a_reader() -> None:
    """A field of a type parse_event cannot read back fails at import; every type is read back here once."""
    assert all(issubclass(cls, Event) for cls in EVENT_TYPES.values())
    sample = {"str": "x", "int": 1, "float": 1.5, "bool": True, "dict": {}, "list[str]": ["x"], "list[dict]": [{}]}
    for type_, cls in EVENT_TYPES.items():
        line = {"v": 1, "t": 0, "type": type_}
        for f in dataclasses.fields(cls):
            text = str(f.type)
            line[f.name] = STEP_LINE if text == "StepKey" else None if text.endswith("| None") else sample[text]
        assert isinstance(parse_event(line), LoggedEvent), (type_, parse_event(line))


@pytest.mark.foreign_events
def test_the_suite_wide_check_names_the_file_and_the_problem(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    lines = [{"v": 1, "t": 0, "type": "made_up"}, {"v": 1, "t": 0, "type": "step_failed", "step": STEP_LINE,
                                                    "reason": "x"}]  # fmt: skip
    (run / "events.jsonl").write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    assert undefined_events(tmp_path) == ["runs/r1/events.jsonl: unknown event type 'made_up'"]
