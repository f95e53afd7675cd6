"""The one definition of events: lines as written, the check of lines read back, the docs table, the readers."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import orjson
import pytest

from console.views.run_view import RunView
from runners.plan.steps import StepKey
from runners.run.event_types import (
    DURABLE,
    EVENT_TYPES,
    GuardEndedTarget,
    GuardStarted,
    StepFinished,
    StepStarted,
    check_event,
    markdown_table,
)
from runners.run.events import EventLog
from runners.run.files import read_jsonl
from tests.support.events import undefined_events
from tests.support.project import ROOT

STEP = StepKey("a", "primary", "replay", 0)
# what was fsynced before the types were written down: durability must not change silently
DURABLE_BEFORE = {
    "run_started", "run_finished", "step_finished", "step_failed", "step_aborted", "dispatch_paused",
    "dispatch_resumed", "serve_failed", "env_mismatch", "kernel_checks_failed", "watchdog_action", "guard_lost",
    "guard_ended_target", "run_dir_repaired", "oom_recorded",  # issue 22: a host-level record was written
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
        ({"v": 1, "t": 0, "type": "step_failed", "step": {}, "reason": "x", "why": "y"},
         ["step_failed: field 'why' is not defined"]),
        ({"v": 1, "t": 0, "type": "step_failed", "step": {}}, ["step_failed: field 'reason' is missing"]),
        ({"v": 1, "t": 0, "type": "step_finished", "step": {}, "stats": {}}, []),
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


def test_every_event_the_console_folds_is_a_defined_type() -> None:
    handled = {name.removeprefix("_on_") for name in dir(RunView) if name.startswith("_on_")}
    assert handled <= set(EVENT_TYPES), sorted(handled - set(EVENT_TYPES))


@pytest.mark.foreign_events
def test_the_suite_wide_check_names_the_file_and_the_problem(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    lines = [{"v": 1, "t": 0, "type": "made_up"}, {"v": 1, "t": 0, "type": "step_failed", "step": {}, "reason": "x"}]
    (run / "events.jsonl").write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    assert undefined_events(tmp_path) == ["runs/r1/events.jsonl: unknown event type 'made_up'"]
