"""The title bar keeps the state, the runner, the memory level and PAUSED whatever the width."""

from __future__ import annotations

import pytest

from console.panels.title_bar import TitleFields, title_text

FIELDS = TitleFields(run_id="llama-wo-split-20261124-031502-9f3a", host="spark-07.lab.example.com",
                     plan="llama-wo-split", state="aborted (resumable)", elapsed_s=4 * 3600 + 62, eta_s=3 * 3600,
                     runner="runner exited (137)", memory="abort", paused=True)  # fmt: skip
ALWAYS = (FIELDS.run_id, "aborted (resumable)", "04:01:02", "runner exited (137)", "memory ABORT", "PAUSED")


def test_everything_shows_when_there_is_room() -> None:
    text = title_text(FIELDS, 250).plain
    assert "\n" not in text and "on spark-07.lab.example.com" in text and "plan llama-wo-split" in text
    assert all(field in text for field in ALWAYS) and "(ETA 03:00:00)" in text


@pytest.mark.parametrize("width", [180, 150, 140, 118])
def test_host_then_plan_then_eta_give_way_to_the_memory_level(width: int) -> None:
    text = title_text(FIELDS, width)
    assert "\n" not in text.plain and text.cell_len <= width, (width, text.plain)
    assert all(field in text.plain for field in ALWAYS), (width, text.plain)
    assert "lab.example.com" not in text.plain or width >= 180


@pytest.mark.parametrize("width", [100, 78])
def test_a_narrow_terminal_gets_two_lines_broken_between_fields(width: int) -> None:
    text = title_text(FIELDS, width)
    lines = text.plain.split("\n")
    assert len(lines) == 2 and all(len(line) <= width for line in lines), lines
    assert all(field in text.plain for field in ALWAYS) and "spark-07" not in text.plain
    assert not any(line.startswith(" ·") or line.endswith("· ") for line in lines)


def test_before_the_first_step_the_clock_says_so() -> None:
    idle = TitleFields("r1", "", "mini", "created", None, None, "runner not running", "unknown", False)
    assert (
        title_text(idle, 120).plain
        == "r1  ·  plan mini  ·  created  ·  --:--:--  ·  runner not running  ·  memory UNKNOWN"
    )


def test_a_very_narrow_title_keeps_memory_and_paused_in_its_first_three_lines() -> None:
    lines = title_text(FIELDS, 40).plain.split("\n")
    assert all(len(line) <= 40 for line in lines), lines
    assert "memory ABORT" in "\n".join(lines[:3]) and "PAUSED" in "\n".join(lines[:3]), lines
    assert "aborted (resumable)" in "\n".join(lines[:3])
