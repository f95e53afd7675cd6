"""Pressure stall information (runners/host/psi.py): both lines, a missing full line, garbage, an absent file."""

from __future__ import annotations

from pathlib import Path

from runners.host.psi import Pressure, parse_psi, read_psi
from tests.support.fake_host import PSI


def test_psi_some_and_full() -> None:
    """Both lines: averages as floats, totals as ints."""
    assert parse_psi(PSI) == Pressure(1.5, 0.75, 0.25, 123456, 0.5, 0.2, 0.1, 6543)


def test_psi_without_full_line_and_garbage() -> None:
    """No full line (older kernels, cpu): full_* None; garbage tokens leave their field None."""
    only_some = parse_psi(PSI.splitlines()[0])
    assert only_some.some_avg10 == 1.5 and only_some.some_total == 123456
    assert (only_some.full_avg10, only_some.full_total) == (None, None)
    odd = parse_psi("some avg10=abc avg60=nan avg300=-1 total=12.5 bogus=3 avg10\nfull avg10=2.5\nnoise\n")
    assert odd == Pressure(full_avg10=2.5)
    assert parse_psi("") == Pressure()


def test_read_psi_absent_file_is_none(tmp_path: Path) -> None:
    """No PSI file (PSI disabled) is None; a directory where a file should be (unreadable) is None too."""
    assert read_psi(tmp_path / "pressure" / "memory") is None
    (tmp_path / "memory").mkdir()
    assert read_psi(tmp_path / "memory") is None
    (tmp_path / "cpu").write_text(PSI)
    assert read_psi(tmp_path / "cpu") == parse_psi(PSI)
