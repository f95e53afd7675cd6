"""A phase's `region_timings` table: accepted as documented, refused with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config_file import ConfigFileError
from runners.plan.load import load_plan
from runners.plan.phases import RegionTimingSpec
from tests.support.plans import write_plan


def _plan(tmp_path: Path, table: str, mode: str = "supplementary") -> Path:
    path = write_plan(tmp_path)
    path.write_text(
        path.read_text()
        + f'\n[[phases]]\nname = "regions"\nkind = "sharegpt"\nmode = "{mode}"\nrequests = 1\n'
        + f"region_timings = {{ {table} }}\n"
    )
    return path


def _problems(path: Path) -> str:
    with pytest.raises(ConfigFileError) as info:
        load_plan(path)
    return "\n".join(info.value.problems)


def test_a_region_timing_table_loads_with_its_defaults(tmp_path: Path) -> None:
    table = 'trigger = "{profile_dir}/.dump", output = "/tmp/rt.npy", regions = ["load", "gather"], tick_ns = 1.0'
    spec = load_plan(_plan(tmp_path, table)).plan.phase("regions").region_timings
    assert spec == RegionTimingSpec(trigger="{profile_dir}/.dump", output="/tmp/rt.npy", regions=["load", "gather"],
                                    tick_ns=1.0)  # fmt: skip
    assert (spec.wait_s, spec.kernel, spec.active_ctas) == (30.0, None, None)
    assert load_plan(write_plan(tmp_path)).plan.phase("replay").region_timings is None


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ('trigger = "rel/.dump", output = "/tmp/rt.npy"', "region_timings.trigger: 'rel/.dump' must be an absolute"),
        ('trigger = "/tmp/.dump", output = "{run_dir}/rt.npy"', "region_timings.output: '{run_dir}/rt.npy' must be"),
        ('trigger = "/tmp/{x}/.dump", output = "/tmp/rt.npy"', "the only placeholder is {profile_dir}"),
        ('trigger = "/tmp/.dump", output = "/tmp/rt.bin"', "output: '/tmp/rt.bin': the output is a numpy"),
        ('trigger = "/tmp/rt.npy", output = "/tmp/rt.npy"', "trigger and output must be different files"),
        ('trigger = "/tmp/.dump", output = "/tmp/rt.npy", wait_s = 0', "region_timings.wait_s: Input should be"),
        ('trigger = "/tmp/.dump", output = "/tmp/rt.npy", tick_ns = -1', "region_timings.tick_ns"),
        ('trigger = "/tmp/.dump", output = "/tmp/rt.npy", active_ctas = 0', "region_timings.active_ctas"),
        ('trigger = "/tmp/.dump", output = "/tmp/rt.npy", regions = ["a", "a"]', "region names must be distinct"),
        ('trigger = "/tmp/.dump", output = "/tmp/rt.npy", ticks = 1', "region_timings.ticks: unknown field"),
        ('output = "/tmp/rt.npy"', "region_timings.trigger: required field is missing"),
    ],
)
def test_bad_region_timing_settings_name_the_field(tmp_path: Path, table: str, says: str) -> None:
    assert says in _problems(_plan(tmp_path, table))


def test_region_timings_belong_in_the_supplementary_pass(tmp_path: Path) -> None:
    text = _problems(_plan(tmp_path, 'trigger = "/tmp/.dump", output = "/tmp/rt.npy"', mode="primary"))
    assert 'region_timings belongs in mode = "supplementary"' in text
