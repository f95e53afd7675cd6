"""Arrival schedules, mooncake trace replay and the coherence check, against hand-computed values."""

from __future__ import annotations

import json
import os
import random
import statistics
import string
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from runners.replay.arrivals import constant_offsets, gamma_offsets, poisson_offsets
from runners.replay.coherence import CoherenceReport, check_coherence, nonprintable_ratio, repetition_ratio
from runners.replay.prompts import DatasetError
from runners.replay.trace import TraceEntry, load_trace, synthesize_prompt, trace_offsets
from tests.support.project import ROOT

# The first four lines of Mooncake's public sample trace (mooncake_trace.jsonl), a blank line, and one more.
MOONCAKE_EXCERPT = """\
{"timestamp": 0, "input_length": 6755, "output_length": 500, "hash_ids": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]}
{"timestamp": 0, "input_length": 7319, "output_length": 490, "hash_ids": [0, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27]}
{"timestamp": 3052, "input_length": 7234, "output_length": 794, "hash_ids": [0, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41]}

{"timestamp": 3052, "input_length": 2287, "output_length": 316, "hash_ids": [0, 42, 43, 44, 45]}
{"timestamp": 4538.5, "input_length": 1100, "output_length": 12, "hash_ids": [0, 42, 46]}
"""  # noqa: E501


def write(tmp_path: Path, text: str) -> Path:
    """`text` saved as trace.jsonl under tmp_path."""
    path = tmp_path / "trace.jsonl"
    path.write_text(text, encoding="utf-8")
    return path


def entry(hash_ids: tuple[int, ...], input_length: int, line: int = 1) -> TraceEntry:
    """A trace entry at t=0 with the given blocks and prompt length."""
    return TraceEntry(line=line, timestamp_ms=0.0, input_length=input_length, output_length=8, hash_ids=hash_ids)


# --- arrivals ---------------------------------------------------------------------------------------------


def test_constant_offsets_are_i_over_rate() -> None:
    assert constant_offsets(4, 2.0) == [0.0, 0.5, 1.0, 1.5]
    assert constant_offsets(3, 0.5) == [0.0, 2.0, 4.0]
    assert constant_offsets(0, 10.0) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: constant_offsets(-1, 1.0), "request count must be >= 0"),
        (lambda: constant_offsets(3, 0.0), "request rate must be a positive"),
        (lambda: gamma_offsets(3, -2.0, 1.0, 0), "request rate must be a positive"),
        (lambda: gamma_offsets(3, float("inf"), 1.0, 0), "request rate must be a positive"),
        (lambda: gamma_offsets(3, 1.0, 0.0, 0), "burstiness must be a positive"),
        (lambda: poisson_offsets(-5, 1.0, 0), "request count must be >= 0"),
    ],
)
def test_arrival_arguments_are_validated(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_gamma_offsets_follow_the_formula_and_are_deterministic() -> None:
    offsets = gamma_offsets(5, 4.0, 2.0, seed=7)
    rng = random.Random(7)
    gaps = [rng.gammavariate(2.0, 1 / (4.0 * 2.0)) for _ in range(4)]
    expected = [0.0, gaps[0], gaps[0] + gaps[1], gaps[0] + gaps[1] + gaps[2], sum(gaps)]
    assert offsets == pytest.approx(expected, rel=1e-12)
    assert gamma_offsets(5, 4.0, 2.0, seed=7) == offsets
    assert gamma_offsets(5, 4.0, 2.0, seed=8) != offsets
    assert gamma_offsets(1, 4.0, 2.0, seed=7) == [0.0]
    assert gamma_offsets(0, 4.0, 2.0, seed=7) == []
    assert poisson_offsets(50, 3.0, seed=1) == gamma_offsets(50, 3.0, 1.0, seed=1)


def gaps(offsets: list[float]) -> list[float]:
    """Differences between consecutive offsets."""
    return [b - a for a, b in pairwise(offsets)]


@pytest.mark.parametrize("burstiness", [0.25, 1.0, 4.0])
def test_gamma_mean_gap_is_one_over_rate(burstiness: float) -> None:
    drawn = gaps(gamma_offsets(20_001, 5.0, burstiness, seed=123))
    assert len(drawn) == 20_000
    assert min(drawn) >= 0.0
    assert statistics.fmean(drawn) == pytest.approx(1 / 5.0, rel=0.05)


def test_lower_burstiness_is_burstier() -> None:
    def cv(burstiness: float) -> float:
        drawn = gaps(gamma_offsets(20_001, 5.0, burstiness, seed=99))
        return statistics.pstdev(drawn) / statistics.fmean(drawn)

    bursty, smooth = cv(0.25), cv(4.0)
    assert bursty > smooth
    assert bursty == pytest.approx(2.0, rel=0.1)  # CV of Gamma(k) gaps is 1/sqrt(k)
    assert smooth == pytest.approx(0.5, rel=0.1)


# --- trace loading ----------------------------------------------------------------------------------------


def test_load_trace_reads_a_mooncake_excerpt(tmp_path: Path) -> None:
    entries = load_trace(write(tmp_path, MOONCAKE_EXCERPT))
    assert [e.line for e in entries] == [1, 2, 3, 5, 6]  # line 4 is blank
    assert entries[0] == TraceEntry(1, 0.0, 6755, 500, tuple(range(14)))
    assert entries[3] == TraceEntry(5, 3052.0, 2287, 316, (0, 42, 43, 44, 45))
    assert entries[4].timestamp_ms == 4538.5
    assert all(isinstance(h, int) for e in entries for h in e.hash_ids)


GOOD = {"timestamp": 10, "input_length": 600, "output_length": 20, "hash_ids": [1, 2]}


def line(**changes) -> str:
    """GOOD as a JSON line with `changes` applied (a value of ... drops the field)."""
    fields = {k: v for k, v in {**GOOD, **changes}.items() if v is not ...}
    return json.dumps(fields)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"timestamp": 0, "input_length": 5', "not valid JSON"),
        ("[1, 2, 3]", "expected a JSON object per line"),
        (line(timestamp=...), "missing field 'timestamp'"),
        (line(input_length=...), "missing field 'input_length'"),
        (line(output_length=...), "missing field 'output_length'"),
        (line(hash_ids=...), "missing field 'hash_ids'"),
        (line(timestamp=-1), "field 'timestamp' must be a non-negative number"),
        (line(timestamp="soon"), "field 'timestamp' must be a non-negative number"),
        (line(input_length=-3), "field 'input_length' must be a non-negative integer"),
        (line(output_length=2.5), "field 'output_length' must be a non-negative integer"),
        (line(output_length=True), "field 'output_length' must be a non-negative integer"),
        (line(hash_ids=7), "field 'hash_ids' must be a list"),
        (line(hash_ids=[1, "2"]), "field 'hash_ids' item 1 must be a non-negative integer"),
        (line(hash_ids=[1.5]), "field 'hash_ids' item 0 must be a non-negative integer"),
        (line(hash_ids=[-4]), "field 'hash_ids' item 0 must be a non-negative integer"),
        (line(timestamp=5), "timestamp 5 ms is earlier than 10 ms on line 2; requests must be in arrival order"),
    ],
)
def test_load_trace_errors_name_file_line_and_field(tmp_path: Path, bad: str, message: str) -> None:
    path = write(tmp_path, f"{line(timestamp=0)}\n{line()}\n\n{bad}\n")
    with pytest.raises(DatasetError) as caught:
        load_trace(path)
    assert str(caught.value).startswith(f"{path}:4: ")
    assert message in str(caught.value)


def test_load_trace_refuses_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such trace file"):
        load_trace(tmp_path / "absent.jsonl")
    with pytest.raises(DatasetError, match="the trace has no entries"):
        load_trace(write(tmp_path, "\n   \n\n"))
    with pytest.raises(DatasetError, match="not a readable UTF-8 text file"):
        load_trace(tmp_path)  # a directory


def test_backwards_timestamps_suggest_sorting(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="sort the file by timestamp"):
        load_trace(write(tmp_path, f"{line(timestamp=20)}\n{line(timestamp=19.5)}\n"))


def test_trace_offsets_are_seconds_from_the_first_entry_times_scale(tmp_path: Path) -> None:
    entries = load_trace(write(tmp_path, MOONCAKE_EXCERPT))
    assert trace_offsets(entries) == pytest.approx([0.0, 0.0, 3.052, 3.052, 4.5385])
    assert trace_offsets(entries, time_scale=2.0) == pytest.approx([0.0, 0.0, 6.104, 6.104, 9.077])
    assert trace_offsets(entries[2:], time_scale=0.5) == pytest.approx([0.0, 0.0, 0.74325])
    assert trace_offsets([]) == []
    with pytest.raises(ValueError, match="time_scale must be a positive"):
        trace_offsets(entries, time_scale=0.0)


# --- synthetic prompts ------------------------------------------------------------------------------------


def test_prompts_sharing_leading_hash_ids_share_full_blocks() -> None:
    a = synthesize_prompt(entry((1, 2, 3), 3 * 512))
    b = synthesize_prompt(entry((1, 2, 9), 3 * 512, line=2))
    assert len(a) == len(b) == 3 * 512
    assert a[: 2 * 512] == b[: 2 * 512]
    assert a[2 * 512 :] != b[2 * 512 :]
    assert synthesize_prompt(entry((9,), 512)) == b[2 * 512 :]  # a block depends on its hash id alone


def test_prompt_length_is_input_length_times_chars_per_token() -> None:
    cut = synthesize_prompt(entry((1, 2, 3), 1000))  # 3 blocks = 1536 chars, cut to 1000
    assert len(cut) == 1000
    assert cut == synthesize_prompt(entry((1, 2, 3, 4, 5), 1000))
    padded = synthesize_prompt(entry((1,), 700, line=4))  # one 512-char block, then 188 chars of filler
    assert len(padded) == 700
    assert padded[:512] == cut[:512]
    scaled = synthesize_prompt(entry((1, 2), 300), block_tokens=64, chars_per_token=3.5)
    assert len(scaled) == 1050  # round(300 * 3.5); blocks are round(64 * 3.5) = 224 chars
    assert scaled[:224] == synthesize_prompt(entry((1,), 64), block_tokens=64, chars_per_token=3.5)
    assert synthesize_prompt(entry((1, 2), 0)) == ""


def test_prompts_without_hash_ids_are_deterministic_filler() -> None:
    first = synthesize_prompt(entry((), 300, line=7))
    assert len(first) == 300
    assert first == synthesize_prompt(entry((), 300, line=7))
    assert first != synthesize_prompt(entry((), 300, line=8))
    assert first.isprintable()
    assert set(first) <= set(string.ascii_lowercase + " ")


def test_prompts_are_identical_across_processes() -> None:
    code = (
        "from runners.replay.trace import TraceEntry, synthesize_prompt;"
        "print(synthesize_prompt(TraceEntry(3, 0.0, 900, 1, (5, 6))), end='')"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout == synthesize_prompt(entry((5, 6), 900, line=3))


def test_prompt_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="block_tokens"):
        synthesize_prompt(entry((1,), 10), block_tokens=0)
    with pytest.raises(ValueError, match="chars_per_token"):
        synthesize_prompt(entry((1,), 10), chars_per_token=-1.0)


# --- coherence --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", " \n\t "])
def test_empty_output_warns(text: str | None) -> None:
    report = check_coherence(text)
    assert report.warnings == ("empty output",)
    assert report.chars == len(text or "")


def test_looping_output_warns_with_value_and_threshold() -> None:
    text = "the cat sat. " * 20  # 260 chars, period 13: 245 16-grams of which 13 are distinct
    report = check_coherence(text)
    assert report.repetition_ratio == pytest.approx(1 - 13 / 245)
    assert report.warnings == ("repetition 0.947 > 0.500: the output loops",)
    assert report.as_dict() == {
        "chars": 260,
        "repetition_ratio": report.repetition_ratio,
        "nonprintable_ratio": 0.0,
        "warnings": ["repetition 0.947 > 0.500: the output loops"],
    }


def test_repetition_needs_64_chars() -> None:
    assert repetition_ratio("ab" * 31) == 0.0  # 62 chars: too short to judge
    assert repetition_ratio("ab" * 32) == pytest.approx(1 - 2 / 49)  # 64 chars: 49 16-grams, 2 distinct


def test_random_printable_text_has_no_warnings() -> None:
    rng = random.Random(0)
    text = "".join(rng.choice(string.ascii_letters + string.digits + string.punctuation + " \n") for _ in range(4000))
    report = check_coherence(text)
    assert report == CoherenceReport(4000, report.repetition_ratio, 0.0, ())
    assert report.repetition_ratio == 0.0


def test_control_characters_warn() -> None:
    text = "ok\n\tfine" + "\x00\x1b\x07" + "x" * 29  # 40 chars, 3 of them control; \n and \t are allowed
    assert nonprintable_ratio(text) == pytest.approx(3 / 40)
    report = check_coherence(text)
    assert report.nonprintable_ratio == pytest.approx(0.075)
    assert report.warnings == ("non-printable 0.075 > 0.050: the output has control or invalid characters",)
    assert check_coherence(text, max_nonprintable=0.1).warnings == ()


def test_coherence_thresholds_are_validated() -> None:
    with pytest.raises(ValueError, match="max_repetition"):
        check_coherence("x", max_repetition=1.5)
