"""GSM8K prompting and scoring, checked by hand against lm-eval's gsm8k v3 rules and on the real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runners.replay.gsm8k import (
    STOP,
    Gsm8kItem,
    Gsm8kScore,
    accuracy,
    build_prompt,
    extract_flexible,
    extract_strict,
    fewshot_prefixes,
    load_gsm8k,
    normalize,
    sample_items,
    score,
)
from runners.replay.prompts import DatasetError
from tests.support.project import SHARED

GSM8K_DIR = SHARED / "data" / "gsm8k"  # == Path(__file__).resolve().parents[3] / "shared" / "data" / "gsm8k"


def item(target: str, index: int = 0) -> Gsm8kItem:
    """A problem whose gold solution ends in `#### {target}`."""
    return Gsm8kItem(index=index, question=f"q{index}?", answer=f"Some steps <<1+1=2>>2.\n#### {target}", target=target)


@pytest.fixture(scope="module")
def real() -> tuple[list[Gsm8kItem], list[Gsm8kItem]]:
    """The real test and train splits, or a skip when ../shared has no GSM8K."""
    if not (GSM8K_DIR / "test.jsonl").is_file() or not (GSM8K_DIR / "train.jsonl").is_file():
        pytest.skip(f"../shared/data/gsm8k is absent: no test.jsonl/train.jsonl under {GSM8K_DIR}")
    return load_gsm8k(GSM8K_DIR / "test.jsonl"), load_gsm8k(GSM8K_DIR / "train.jsonl")


# --- extraction and normalisation by hand ---------------------------------------------------------------------


def test_commas_are_extracted_then_ignored() -> None:
    s = score(item("1234"), "So 1000 + 234 = 1,234.\n#### 1,234")
    assert (s.strict, s.flexible) == ("1,234", "1,234")
    assert s.strict_correct and s.flexible_correct
    # and the other way round: a comma in the gold is ignored too
    assert score(item("1,234"), "#### 1234").strict_correct


def test_dollar_sign_breaks_strict_but_not_flexible() -> None:
    # The strict regex needs a digit, '-', '.' or ',' right after "#### ", so "#### $18" is no match;
    # flexible's class includes '$' and normalize deletes it.
    s = score(item("18"), "She makes $18.\n#### $18")
    assert s.strict is None and not s.strict_correct
    assert s.flexible == "$18" and s.flexible_correct
    assert score(item("18"), "She makes $18 a day.").flexible_correct


def test_decimals_are_compared_as_text() -> None:
    # exact_match compares strings: "3.50" != "3.5", and only one trailing '.' goes (regex `\.$`).
    s = score(item("3.5"), "#### 3.50")
    assert s.strict == "3.50" and not s.strict_correct and not s.flexible_correct
    assert score(item("3.5"), "#### 3.5").strict_correct
    assert normalize("3.50") == "3.50"
    assert normalize("42...") == "42.."


def test_negative_answers() -> None:
    s = score(item("-3"), "The change is -3 degrees.\n#### -3")
    assert (s.strict, s.flexible) == ("-3", "-3")
    assert s.strict_correct and s.flexible_correct
    assert not score(item("-3"), "#### 3").strict_correct


def test_trailing_period_is_ignored() -> None:
    s = score(item("18"), "The answer is 18.")
    assert s.flexible == "18." and s.flexible_correct
    assert score(item("18"), "#### 18.").strict_correct


def test_no_marker_strict_none_flexible_takes_last_number() -> None:
    s = score(item("15"), "3 apples and 12 pears make 15 fruits")
    assert s.strict is None and not s.strict_correct
    assert s.flexible == "15" and s.flexible_correct


def test_flexible_takes_the_last_number_strict_the_first_marker() -> None:
    text = "#### 5\nWait, I made a mistake: 5 + 2 = 7\n#### 7\nThat is 7 of 12 items."
    assert extract_strict(text) == "5"
    assert extract_flexible(text) == "12"
    s = score(item("7"), text)
    assert not s.strict_correct and not s.flexible_correct


def test_single_digit_uses_the_second_group() -> None:
    # `(-?[$0-9.,]{2,})` needs two characters, so "7" comes from the second alternative `(-?[0-9]+)`.
    assert extract_flexible("answer 7") == "7"
    assert extract_flexible("total 15, so") == "15,"
    assert normalize("15,") == "15"


def test_normalize_rules() -> None:
    assert normalize("Steps 1,000 then $5.\n#### 1,005") == "1005"
    assert normalize("#### a\n#### B.") == "b"  # greedy: after the last marker, lower-cased
    assert normalize(" 18 ") == " 18 "  # no stripping here; the extractors strip


def test_empty_and_none_responses_are_wrong() -> None:
    assert score(item("18"), "") == Gsm8kScore(None, None, False, False)
    assert score(item("18"), None) == Gsm8kScore(None, None, False, False)
    assert extract_strict("") is None and extract_flexible("") is None


def test_prompt_rendering() -> None:
    one = Gsm8kItem(index=0, question="How many?", answer="2+2=4\n#### 4", target="4")
    prefix = fewshot_prefixes([one], [0], k=1)[0]
    assert prefix == "Question: How many?\nAnswer: 2+2=4\n#### 4\n\n"
    assert fewshot_prefixes([one], [0], k=0) == {0: ""}
    assert build_prompt(prefix, item("1", 1)) == prefix + "Question: q1?\nAnswer:"
    assert STOP == ["Question:", "</s>", "<|im_end|>"]


def test_accuracy_by_hand() -> None:
    scores = [score(item("1"), "#### 1"), score(item("2"), "it is 2"), score(item("3"), None), score(item("4"), "5")]
    assert accuracy(scores) == {
        "n": 4,
        "strict_correct": 1,
        "flexible_correct": 2,
        "strict_accuracy": 0.25,
        "flexible_accuracy": 0.5,
    }
    assert accuracy([])["strict_accuracy"] is None and accuracy([])["flexible_accuracy"] is None


def test_sample_items_small() -> None:
    items = [item(str(i), i) for i in range(10)]
    assert sample_items(items, n=50) == items
    picked = sample_items(items, n=4, seed=7)
    assert picked == sample_items(items, n=4, seed=7)
    assert len({p.index for p in picked}) == 4
    assert [p.index for p in picked] == sorted(p.index for p in picked)


# --- malformed files -------------------------------------------------------------------------------------------


GOOD_LINE = json.dumps({"question": "q?", "answer": "1+1=2\n#### 2"})


@pytest.mark.parametrize(
    ("second_line", "complaint"),
    [
        ('{"question": "q?", "answer": ', "not valid JSON"),
        (json.dumps({"question": "q?"}), "'answer'"),
        (json.dumps({"answer": "#### 2"}), "'question'"),
        (json.dumps({"question": "q?", "answer": "just 2"}), "'#### '"),
        (json.dumps(["q?", "#### 2"]), "JSON object"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, second_line: str, complaint: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{GOOD_LINE}\n{second_line}\n{GOOD_LINE}\n", encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        load_gsm8k(path)
    assert f"{path}:2:" in str(err.value)
    assert complaint in str(err.value)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such dataset file") as err:
        load_gsm8k(tmp_path / "absent.jsonl")
    assert str(tmp_path / "absent.jsonl") in str(err.value)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="no GSM8K problems"):
        load_gsm8k(empty)


def test_loader_keeps_line_numbers_and_target(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text(GOOD_LINE + "\n\n" + json.dumps({"question": "r?", "answer": "x\n#### 1,234 "}) + "\n")
    loaded = load_gsm8k(path)
    assert [(i.index, i.question, i.target) for i in loaded] == [(0, "q?", "2"), (2, "r?", "1,234")]


# --- real data -------------------------------------------------------------------------------------------------


def test_every_gold_solution_scores_correct(real: tuple[list[Gsm8kItem], list[Gsm8kItem]]) -> None:
    test, train = real
    assert (len(test), len(train)) == (1319, 7473)
    wrong = [i.index for i in test if not (s := score(i, i.answer)).strict_correct or not s.flexible_correct]
    assert wrong == []
    assert all(score(i, i.answer).strict == i.target for i in test)


def test_real_fewshot_prefix(real: tuple[list[Gsm8kItem], list[Gsm8kItem]]) -> None:
    test, train = real
    prefixes = fewshot_prefixes(train, [0, 7], k=5, seed=1234)
    prefix = prefixes[0]
    assert prefixes == fewshot_prefixes(train, [7, 0], k=5, seed=1234)
    # one sampler for the whole task: document 7 gets the eighth draw, not the first one again
    assert prefixes[7] != prefix and prefixes[7].count("Question: ") == 5
    assert prefix.endswith("\n\n") and prefix.count("Question: ") == 5
    # Random(1234).sample over the 7,473 train rows, in the order drawn; pinned so a change shows up.
    expected = [train[i] for i in (6374, 3610, 957, 61, 742)]
    assert prefix == "".join(f"Question: {t.question}\nAnswer: {t.answer}\n\n" for t in expected)
    test_questions = {t.question for t in test}
    assert not any(t.question in test_questions for t in expected)
    assert build_prompt(prefix, test[0]).endswith(f"\n\nQuestion: {test[0].question}\nAnswer:")


def test_real_sample_items(real: tuple[list[Gsm8kItem], list[Gsm8kItem]]) -> None:
    test, _ = real
    picked = sample_items(test, n=50, seed=42)
    assert picked == sample_items(test, n=50, seed=42)
    indices = [p.index for p in picked]
    assert len(set(indices)) == 50 and indices == sorted(indices)
    assert sample_items(test, n=50, seed=43) != picked
