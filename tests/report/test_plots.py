"""The report's PNG plots, drawn from a real finished run, from runs with missing steps, and the Pareto rule."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from matplotlib.image import imread

from runners.evidence.results import load_run_results
from runners.report import plots
from runners.report.plots import write_plots
from runners.run.rundir import create_run_dir
from tests.support.plans import write_plan
from tests.support.processes import run_headless

pytestmark = pytest.mark.xdist_group("report-plots-run")  # one worker makes its module run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALL_PLOTS = ("ttft_cdf.png", "tpot_cdf.png", "wall_per_arm.png", "pareto.png")

# A second primary phase with two repetitions: it has the most repeats, so it is the deciding wall phase.
DECODE_PHASE = """
[[phases]]
name = "decode"
kind = "sharegpt"
requests = 4
concurrency = 2
max_tokens = 24
ignore_eos = true
repeats = 2
http_timeout_s = 30
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-arm run on the embedded engine: phase `replay` once, phase `decode` twice per arm."""
    directory = tmp_path_factory.mktemp("plots-run")
    plan = write_plan(directory, requests=6, concurrency=3, max_tokens=12)
    plan.write_text(plan.read_text() + DECODE_PHASE)
    out = directory / "run"
    proc = run_headless(plan, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def assert_real_png(path: Path) -> None:
    """A PNG by its signature, larger than a blank canvas, and not all one colour once decoded."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), path
    assert len(data) > 5_000, (path, len(data))
    pixels = imread(path)
    assert (pixels != pixels[0, 0]).any(), f"{path} is one colour"


@pytest.mark.slow
def test_a_finished_run_gets_all_four_plots(finished_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "plots"
    result = write_plots(load_run_results(finished_run), out)
    assert result.skipped == ()
    assert result.written == tuple(out / name for name in ALL_PLOTS)
    for path in result.written:
        assert_real_png(path)
    assert sorted(p.name for p in out.iterdir()) == sorted(ALL_PLOTS)  # no temp files left behind


@pytest.mark.slow
def test_the_same_run_renders_to_the_same_bytes(finished_run: Path, tmp_path: Path) -> None:
    results = load_run_results(finished_run)
    first = write_plots(results, tmp_path / "a")
    second = write_plots(results, tmp_path / "b")
    for a, b in zip(first.written, second.written, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


@pytest.mark.slow
def test_a_deciding_phase_without_done_steps_skips_its_plots(finished_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    for arm in ("split1", "split8"):
        shutil.rmtree(run / "done" / arm / "primary" / "decode")
    out = tmp_path / "plots"
    out.mkdir()
    (out / "wall_per_arm.png").write_bytes(b"from an earlier report")
    result = write_plots(load_run_results(run), out)
    assert result.skipped == (
        "ttft_cdf.png: no done repetition in phase decode",
        "tpot_cdf.png: no done repetition in phase decode",
        "wall_per_arm.png: no arm has a done repetition of phase decode",
    )
    assert result.written == (out / "pareto.png",)  # phase `replay` still has its points
    assert_real_png(out / "pareto.png")
    assert [p.name for p in out.iterdir()] == ["pareto.png"]  # the stale wall plot is gone


@pytest.mark.slow
def test_one_arm_without_done_steps_still_plots_the_other(finished_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    shutil.rmtree(run / "done" / "split8")
    result = write_plots(load_run_results(run), tmp_path / "plots")
    assert result.skipped == ()
    assert len(result.written) == len(ALL_PLOTS)
    for path in result.written:
        assert_real_png(path)


@pytest.mark.slow
def test_a_plot_that_fails_to_draw_does_not_cost_the_others(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(results):
        raise RuntimeError("no renderer for this")

    monkeypatch.setattr(plots, "PLOTS", (("broken.png", broken), *plots.PLOTS))
    out = tmp_path / "plots"
    result = write_plots(load_run_results(finished_run), out)
    assert result.skipped == ("broken.png: RuntimeError: no renderer for this",)
    assert [p.name for p in result.written] == list(ALL_PLOTS)
    assert not (out / "broken.png").exists()


def test_a_run_that_never_ran_skips_every_plot_and_says_why(tmp_path: Path) -> None:
    plan = write_plan(tmp_path)
    plan.write_text(plan.read_text() + DECODE_PHASE)
    run = create_run_dir(tmp_path / "run", tmp_path, plan, "mini", tmp_path)
    out = tmp_path / "plots"
    result = write_plots(load_run_results(run.root), out)
    assert result.written == ()
    assert result.skipped == (
        "ttft_cdf.png: no done repetition in phase decode",
        "tpot_cdf.png: no done repetition in phase decode",
        "wall_per_arm.png: no arm has a done repetition of phase decode",
        "pareto.png: no primary phase with both a TTFT p99 and an output throughput",
    )
    assert not out.exists() or not any(out.iterdir())
