"""LogsScreen: the pure search/error functions, the file follower, and the screen driven by Pilot on real files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Static

from console.screens.logs_screen import LogsScreen, LogView
from console.views.log_follow import LogFollower, clean_line, find_errors, find_matches, is_error_line, step_to
from tests.support.waits import pilot_until

WAIT_S = 5.0


async def until(pilot, predicate, deadline_s: float = WAIT_S) -> bool:
    """pilot_until with this file's shorter deadline."""
    return await pilot_until(pilot, predicate, deadline_s)


def write(path: Path, lines: list[str], mode: str = "a") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode, encoding="utf-8") as fh:
        fh.write("".join(f"{line}\n" for line in lines))


# --- pure functions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "ERROR 07-01 12:00:00 engine.py:42] boom",
        "Traceback (most recent call last):",
        "RuntimeError: CUDA error: an illegal memory access was encountered",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        "ValueError exception in handler",
        "FATAL: cannot bind",
        "Killed",
        "oom-kill:constraint=CONSTRAINT_MEMCG",
        "container OOMKilled",
    ],
)
def test_error_lines_are_recognised(line: str) -> None:
    assert is_error_line(line)


@pytest.mark.parametrize(
    "line", ["INFO 07-01 Started server process", "room for 12 more requests", "bloom filter ready", ""]
)
def test_ordinary_lines_are_not_errors(line: str) -> None:
    assert not is_error_line(line)


def test_find_matches_ignores_case_and_an_empty_query_matches_nothing() -> None:
    lines = ["alpha", "Needle one", "beta", "a NEEDLE", "needlework"]
    assert find_matches(lines, "needle") == [1, 3, 4]
    assert find_matches(lines, "NEEDLE ONE") == [1]
    assert find_matches(lines, "") == []
    assert find_matches(lines, "zeta") == []
    assert find_errors(["ok", "Error: x", "ok", "fatal"]) == [1, 3]


def test_step_to_moves_forward_and_back_and_wraps() -> None:
    positions = [2, 5, 9]
    assert step_to(positions, -1, True) == 0
    assert step_to(positions, 2, True) == 1
    assert step_to(positions, 9, True) == 0  # wraps to the first
    assert step_to(positions, 5, False) == 0
    assert step_to(positions, 2, False) == 2  # wraps to the last
    assert step_to(positions, 100, False) == 2
    assert step_to([], 0, True) is None


def test_clean_line_strips_colour_codes_control_characters_and_progress_redraws() -> None:
    assert clean_line(b"\x1b[32mINFO\x1b[0m ready\r") == "INFO ready"
    assert clean_line(b"10%|#   \r50%|#####   \r100%|##########") == "100%|##########"
    assert clean_line(b"tab\there\x07") == "tab\there"
    assert clean_line(b"bad \xff byte") == "bad \ufffd byte"
    long = clean_line(b"x" * 5000)
    assert long.startswith("x" * 2000) and "3,000 more characters" in long


# --- the follower, without a UI ---------------------------------------------------------------------------------


def test_follower_holds_a_partial_line_until_it_ends_or_goes_quiet(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    path.write_bytes(b"one\ntw")
    follower = LogFollower(partial_polls=3)
    assert follower.poll(path).lines == ["one"]
    with open(path, "ab") as fh:
        fh.write(b"o\nthree")
    assert follower.poll(path).lines == ["two"]
    assert [follower.poll(path).lines for _ in range(3)] == [[], [], ["three"]]  # nobody finishes it


def test_follower_reads_only_the_tail_of_a_big_file_and_bounded_bytes_per_poll(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    write(path, [f"line {i:05d}" for i in range(50_000)])
    follower = LogFollower(tail_lines=100, read_bytes=1024)
    read = follower.poll(path)
    assert read.lines == [f"line {i:05d}" for i in range(49_900, 50_000)]
    assert "showing the last 100 lines" in read.notes[0]
    assert read.bytes_read <= 64 << 10 < path.stat().st_size
    write(path, [f"new {i:05d}" for i in range(1000)])
    first = follower.poll(path)
    assert 0 < len(first.lines) < 1000 and first.bytes_read - read.bytes_read == 1024


def test_follower_skips_ahead_when_too_far_behind(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    write(path, ["start"])
    follower = LogFollower(tail_lines=10, backlog_bytes=4096)
    assert follower.poll(path).lines == ["start"]
    write(path, [f"burst {i:05d}" for i in range(10_000)])
    read = follower.poll(path)
    assert any("to catch up" in note for note in read.notes)
    assert read.lines == [f"burst {i:05d}" for i in range(9_990, 10_000)]


def test_follower_sees_truncation_rewrite_and_replacement(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    write(path, ["old 1", "old 2"])
    follower = LogFollower()
    assert follower.poll(path).lines == ["old 1", "old 2"]
    write(path, ["new"], mode="w")  # shorter: truncated
    read = follower.poll(path)
    assert read.lines == ["new"] and "truncated" in read.notes[0]
    write(path, ["NEW"], mode="w")  # same size, other bytes: rewritten
    read = follower.poll(path)
    assert read.lines == ["NEW"] and "truncated" in read.notes[0]
    tmp = tmp_path / "serve.log.tmp"
    write(tmp, ["fresh"])
    os.replace(tmp, path)
    read = follower.poll(path)
    assert read.lines == ["fresh"] and "replaced" in read.notes[0]
    path.unlink()
    read = follower.poll(path)
    assert read.waiting and "removed" in read.notes[0]


# --- the screen, driven by Pilot ---------------------------------------------------------------------------------


class Host(App[None]):
    """A bare app that opens LogsScreen on mount."""

    def __init__(self, path_for: Callable[[], Path | None], **options) -> None:
        super().__init__()
        self.path_for = path_for
        self.options = options

    def compose(self) -> ComposeResult:
        yield Static("host", id="host")

    def on_mount(self) -> None:
        self.push_screen(LogsScreen(self.path_for, "serve log · split8 / replay", **self.options))


def shown(app: App) -> list[str]:
    return [strip.text.rstrip() for strip in app.screen.query_one(LogView).lines]


def status(app: App) -> str:
    return str(app.screen.query_one("#logs-status", Static).render())


def placeholder(app: App) -> Static:
    return app.screen.query_one("#logs-placeholder", Static)


async def test_shows_the_file_and_lines_appended_to_it(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    write(path, ["INFO starting", "", "INFO ready"])
    app = Host(lambda: path)
    async with app.run_test(size=(100, 30)) as pilot:
        assert await until(pilot, lambda: shown(app) == ["INFO starting", "", "INFO ready"])
        write(path, ["request 1", "request 2"])
        assert await until(pilot, lambda: shown(app)[-2:] == ["request 1", "request 2"])
        assert str(path) in status(app) and "5 lines read" in status(app) and "following" in status(app)
        assert not placeholder(app).display


async def test_space_pauses_then_flushes_the_held_lines(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    write(path, ["a", "b"])
    app = Host(lambda: path)
    async with app.run_test(size=(100, 30)) as pilot:
        assert await until(pilot, lambda: shown(app) == ["a", "b"])
        await pilot.press("space")
        assert "paused — 0 new lines" in status(app)
        write(path, ["c", "d", "e"])
        assert await until(pilot, lambda: "paused — 3 new lines" in status(app))
        assert shown(app) == ["a", "b"]
        await pilot.press("space")
        assert shown(app) == ["a", "b", "c", "d", "e"]
        assert "paused" not in status(app) and "following" in status(app)


async def test_lines_held_while_paused_are_bounded_and_the_rest_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    write(path, ["a"])
    app = Host(lambda: path, max_lines=10)
    async with app.run_test(size=(100, 30)) as pilot:
        assert await until(pilot, lambda: shown(app) == ["a"])
        await pilot.press("space")
        write(path, [f"new {i}" for i in range(6)])
        assert await until(pilot, lambda: "paused — 6 new lines" in status(app))
        write(path, [f"new {i}" for i in range(6, 12)])
        assert await until(pilot, lambda: "paused — 12 new lines" in status(app))
        await pilot.press("space")
        lines = shown(app)
        assert "not shown: 3 lines that arrived while paused" in lines[0]
        assert lines[1:] == [f"new {i}" for i in range(3, 12)]


async def test_slash_searches_and_n_moves_between_matches(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    write(path, ["alpha", "needle one", "beta", "a NEEDLE two", "gamma", "needle three"])
    app = Host(lambda: path)
    async with app.run_test(size=(100, 30)) as pilot:
        assert await until(pilot, lambda: len(shown(app)) == 6)
        log = app.screen.query_one(LogView)
        await pilot.press("slash", *"Needle", "enter")
        assert log.marked_line == 1 and "match 1 of 3" in status(app)
        assert not log.auto_scroll and "view held" in status(app)
        await pilot.pause()
        marked, plain = log.render_line(1), log.render_line(0)  # the view starts at line 0
        assert marked.text.startswith("needle one") and plain.text.startswith("alpha")
        assert next(iter(marked)).style.bgcolor != next(iter(plain)).style.bgcolor
        await pilot.press("n")
        assert log.marked_line == 3 and "match 2 of 3" in status(app)
        await pilot.press("n", "n")
        assert log.marked_line == 1 and "match 1 of 3" in status(app)  # wrapped
        await pilot.press("N")
        assert log.marked_line == 5 and "match 3 of 3" in status(app)
        await pilot.press("slash", "ctrl+a", "ctrl+k", *"zeta", "enter")
        assert log.marked_line is None and "no match for “zeta”" in status(app)
        await pilot.press("G")
        assert log.auto_scroll and "view held" not in status(app)


async def test_e_jumps_between_error_lines_shown_in_red(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    write(path, ["INFO ok", "ERROR boom", "INFO ok", "Traceback (most recent call last):", "INFO ok"])
    app = Host(lambda: path)
    async with app.run_test(size=(100, 30)) as pilot:
        assert await until(pilot, lambda: len(shown(app)) == 5)
        log = app.screen.query_one(LogView)
        assert any(s.style and s.style.color and s.style.color.name == "red" for s in log.lines[1])
        assert not any(s.style and s.style.color and s.style.color.name == "red" for s in log.lines[0])
        await pilot.press("e")
        assert log.marked_line == 1 and "error 1 of 2" in status(app)
        await pilot.press("e")
        assert log.marked_line == 3 and "error 2 of 2" in status(app)
        await pilot.press("E")
        assert log.marked_line == 1
        await pilot.press("end")
        assert log.marked_line is None and log.auto_scroll


async def test_waits_for_a_file_that_does_not_exist_yet_then_follows_it(tmp_path: Path) -> None:
    path = tmp_path / "arms" / "split8" / "replay" / "serve.log"
    app = Host(lambda: path)
    async with app.run_test(size=(100, 30)) as pilot:
        assert await until(pilot, lambda: placeholder(app).display)
        assert f"waiting for {path} to appear" in str(placeholder(app).render())
        write(path, ["INFO serve session 1"])
        assert await until(pilot, lambda: shown(app) == ["INFO serve session 1"])
        assert not placeholder(app).display


async def test_path_for_is_asked_again_as_the_current_arm_changes(tmp_path: Path) -> None:
    first, second = tmp_path / "split1.log", tmp_path / "split8.log"
    write(first, ["split1 line"])
    write(second, ["split8 line"])
    current: dict[str, Path | None] = {"path": None}
    app = Host(lambda: current["path"])
    async with app.run_test(size=(100, 30)) as pilot:
        assert await until(pilot, lambda: "no file to follow yet" in str(placeholder(app).render()))
        current["path"] = first
        assert await until(pilot, lambda: shown(app) == ["split1 line"])
        current["path"] = second
        assert await until(pilot, lambda: shown(app)[-1:] == ["split8 line"])
        assert f"now following {second}" in shown(app)[-2]


async def test_a_truncated_or_replaced_file_keeps_being_followed(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    write(path, ["session 1 line 1", "session 1 line 2"])
    app = Host(lambda: path)
    async with app.run_test(size=(100, 30)) as pilot:
        assert await until(pilot, lambda: len(shown(app)) == 2)
        write(path, ["rotated 1"], mode="w")
        assert await until(pilot, lambda: shown(app)[-1:] == ["rotated 1"])
        assert "truncated" in shown(app)[-2]
        tmp = tmp_path / "serve.log.new"
        write(tmp, ["replaced 1"])
        os.replace(tmp, path)
        assert await until(pilot, lambda: shown(app)[-1:] == ["replaced 1"])
        assert "replaced" in shown(app)[-2]
        write(path, ["replaced 2"])
        assert await until(pilot, lambda: shown(app)[-1:] == ["replaced 2"])


async def test_a_big_file_opens_at_its_tail_and_the_log_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    write(path, [f"line {i:05d}" for i in range(50_000)])
    app = Host(lambda: path, max_lines=3000)
    async with app.run_test(size=(100, 30)) as pilot:
        assert await until(pilot, lambda: len(shown(app)) > 1)
        lines = shown(app)
        assert "showing the last 2,000 lines" in lines[0]
        assert lines[1] == "line 48000" and lines[-1] == "line 49999" and len(lines) == 2001
        screen = app.screen
        assert isinstance(screen, LogsScreen)
        assert screen.bytes_read < path.stat().st_size // 4
        write(path, [f"more {i:05d}" for i in range(2000)])
        assert await until(pilot, lambda: shown(app)[-1:] == ["more 01999"])
        assert len(shown(app)) == 3000 == len(screen._buffer)  # the RichLog and the searched buffer agree
        await pilot.press("slash", *"line 49999", "enter")
        log = screen.query_one(LogView)
        assert log.marked_line is not None and shown(app)[log.marked_line] == "line 49999"
        assert "match 1 of 1" in status(app) and "4,000 lines read" in status(app)


async def test_escape_closes_the_search_box_then_the_screen_and_l_closes_too(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    write(path, ["x"])
    app = Host(lambda: path)
    async with app.run_test(size=(100, 30)) as pilot:
        assert await until(pilot, lambda: shown(app) == ["x"])
        screen = app.screen
        await pilot.press("slash", "l")  # typed into the box, not "close"
        assert app.screen is screen and screen.query_one("#logs-search").value == "l"
        await pilot.press("escape")
        assert app.screen is screen and not screen.query_one("#logs-search").display
        await pilot.press("escape")
        assert not isinstance(app.screen, LogsScreen)
        assert await until(pilot, lambda: not any(w.group == "serve-log" and w.is_running for w in app.workers))
        app.push_screen(LogsScreen(lambda: path, "again"))
        await pilot.pause()
        assert isinstance(app.screen, LogsScreen)
        await pilot.press("l")
        assert not isinstance(app.screen, LogsScreen)
