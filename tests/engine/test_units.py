"""One home for units and for the spelling of a figure that was not measured."""

from __future__ import annotations

from engine.units import GIB, NOT_MEASURED, gib_text, number_text, percent_text, to_gib


def test_a_missing_figure_is_spelled_one_way_never_zero() -> None:
    assert NOT_MEASURED == "N/A"
    assert number_text(None) == number_text(None, 3, " ms", signed=True) == percent_text(None) == NOT_MEASURED


def test_number_text_rounds_and_appends_the_unit_as_given() -> None:
    assert number_text(12.345) == "12.3"
    assert number_text(12.345, 2, " ms") == "12.35 ms"
    assert number_text(7.6, 0, "%") == "8%"
    assert number_text(0.25, 2, " GiB/s", signed=True) == "+0.25 GiB/s"
    assert number_text(-1.04, signed=True) == "-1.0"


def test_gib_is_binary_and_none_stays_none() -> None:
    assert GIB == 2**30
    assert to_gib(3 * GIB) == 3.0 and to_gib(None) is None


def test_gib_text_rounds_to_two_decimals() -> None:
    assert [gib_text(v) for v in (2.9425125122070312, 16.0, 1.5, 0.125)] == ["2.94", "16", "1.5", "0.12"]
