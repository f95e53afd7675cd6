"""The wo_split values the W_O kernels run, checked without torch (plans are validated before any model loads)."""

from __future__ import annotations

VALID_WO_SPLITS = (1, 2, 4, 8)


class WoSplitError(ValueError):
    """A wo_split value outside VALID_WO_SPLITS, or a shape it cannot split."""


def check_wo_split(value: int | str, source: str = "wo_split") -> int:
    """Return `value` as an int in VALID_WO_SPLITS, or raise WoSplitError naming `source`."""
    try:
        split = int(str(value).strip())
    except ValueError:
        split = None
    if split not in VALID_WO_SPLITS:
        allowed = ", ".join(str(v) for v in VALID_WO_SPLITS)
        raise WoSplitError(f"{source}: {str(value)!r} is not one of {allowed}; set it to one of these")
    return split
