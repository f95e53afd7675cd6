"""/proc/meminfo (runners/host/meminfo.py): fields as bytes, what an old or odd kernel writes, a fake tree under
tmp_path and the real machine."""

from __future__ import annotations

from pathlib import Path

from runners.host.meminfo import MemInfo, parse_meminfo, read_meminfo
from tests.support.fake_host import KIB, MEMINFO


def test_meminfo_fields_are_bytes() -> None:
    """Every field is the kB figure times 1024; Hugetlb is taken as the kernel gives it."""
    info = parse_meminfo(MEMINFO)
    assert info == MemInfo(
        total=131072000 * KIB,
        available=24268380 * KIB,
        swap_free=8000000 * KIB,
        anon=90000000 * KIB,
        shmem=500000 * KIB,
        hugetlb=16384 * KIB,
        free=1000000 * KIB,
    )


def test_meminfo_without_memavailable_is_not_estimated() -> None:
    """An old kernel without MemAvailable: available None, even with MemFree and Buffers to hand."""
    info = parse_meminfo(MEMINFO.replace("MemAvailable:   24268380 kB\n", ""))
    assert info.available is None
    assert info.total == 131072000 * KIB


def test_meminfo_hugetlb_falls_back_to_the_default_pool() -> None:
    """No Hugetlb line: HugePages_Total * Hugepagesize; without those either, None."""
    no_hugetlb = MEMINFO.replace("Hugetlb:           16384 kB\n", "")
    assert parse_meminfo(no_hugetlb).hugetlb == 4 * 2048 * KIB
    assert parse_meminfo(no_hugetlb.replace("Hugepagesize:       2048 kB\n", "")).hugetlb is None


def test_meminfo_odd_formats() -> None:
    """Extra spaces and a bare number parse; a foreign unit, garbage or a negative value is None, not 0."""
    text = (
        "garbage without a colon\n"
        "MemTotal :    1000   kB  \n"
        "MemAvailable: 500\n"
        "SwapFree: lots kB\n"
        "AnonPages: 12 MB\n"
        "Shmem: -5 kB\n"
        ": 7 kB\n"
        "Hugetlb:\n"
    )
    info = parse_meminfo(text)
    assert info == MemInfo(total=1000 * KIB, available=500 * KIB)
    assert parse_meminfo("") == MemInfo()
    assert parse_meminfo("\x00\xff:::\n²: 3 kB\nMemTotal: ³ kB\n") == MemInfo()


def test_read_meminfo_fake_and_missing(tmp_path: Path) -> None:
    """read_meminfo reads proc/meminfo; without the file every field is None."""
    (tmp_path / "meminfo").write_text(MEMINFO)
    assert read_meminfo(tmp_path).available == 24268380 * KIB
    assert read_meminfo(tmp_path / "nowhere") == MemInfo()


def test_read_meminfo_real_machine() -> None:
    """The real /proc: total and available are positive and available <= total."""
    info = read_meminfo()
    assert info.total is not None and info.total > 0
    assert info.available is not None and 0 < info.available <= info.total
