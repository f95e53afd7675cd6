"""Plan field parsers (runners/plan/fields.py): sizes in Docker's units."""

from __future__ import annotations

import pytest

from engine.units import GIB
from runners.plan.fields import parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16g", 16 * GIB),
        ("512m", 512 * 1024**2),
        ("1.5GiB", int(1.5 * GIB)),
        ("100 GB", 100 * GIB),
        ("64k", 64 * 1024),
        ("1t", 1024**4),
        ("4096", 4096),
        (8192, 8192),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    """Sizes in Docker's units (powers of 1024), or a byte count."""
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "g", "16x", "-1g", "sixteen"])
def test_parse_size_rejects_what_is_not_a_size(text: str) -> None:
    """Anything else says how to write a size."""
    with pytest.raises(ValueError, match="16g, 512m or a byte count"):
        parse_size(text)
