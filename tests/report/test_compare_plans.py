"""Issue 31 on real run directories (written without a soak, tests/report/run_dirs.py): `compare` and the
reproduction gate refuse a verdict between runs that measured different work and say what differs; a baseline
arm with no data reads "baseline: no data" in summary.md, summary.json and the headless table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from console.cli.headless import summary_table
from runners.report.summary import write_report
from runners.run.files import read_json
from runners.run.rundir import RunDir
from tests.report.run_dirs import measured_run
from tests.support.project import ROOT

CLI = [sys.executable, "-m", "console.cli"]
EXIT_NOT_COMPARABLE = 3


def compare(*args: Path | str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "compare", *map(str, args)], capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A (16 tokens), its repeat (16 tokens, same numbers) and B (8 tokens per request, ms/token 17 % higher)."""
    base = tmp_path_factory.mktemp("runs")
    return {
        "a": measured_run(base / "a", {"split1": 5.0, "split8": 4.0}, max_tokens=16),
        "a_again": measured_run(base / "a_again", {"split1": 5.0, "split8": 4.0}, max_tokens=16),
        "b": measured_run(base / "b", {"split1": 5.85, "split8": 4.0}, max_tokens=8),
    }


def test_compare_of_runs_that_measured_different_work_names_it_and_gives_no_verdict(runs) -> None:
    result = compare(runs["a"], runs["b"])
    assert result.returncode == EXIT_NOT_COMPARABLE, result.stdout + result.stderr
    out = result.stdout
    assert "the runs measured different work:" in out
    row = next(line for line in out.splitlines() if "phase replay: max_tokens" in line)
    assert row.split("│")[2:4] == [" 16            ", " 8     "], row  # A's value, then B's
    assert not any(line.startswith("verdict:") for line in out.splitlines())
    assert "diverges" not in out and "+17.00%" not in out
    assert "not comparable: no verdict; `--anyway` gives one regardless" in out


def test_compare_anyway_gives_the_verdict_below_the_differences(runs) -> None:
    result = compare(runs["a"], runs["b"], "--anyway")
    assert result.returncode == 1, result.stdout + result.stderr  # diverges
    out = result.stdout
    assert (
        out.index("the runs measured different work:")
        < out.index("phase replay: max_tokens")
        < out.index("verdict: diverges")
    )
    assert "split1: ms/token +17.00% (bound ±2%)" in out


def test_compare_json_carries_the_differences(runs) -> None:
    refused = compare(runs["a"], runs["b"], "--json")
    assert refused.returncode == EXIT_NOT_COMPARABLE
    data = json.loads(refused.stdout)
    assert data["plan_differences"] == [{"what": "phase replay: max_tokens", "a": "16", "b": "8"}]
    assert data["gate"]["verdict"] == "not comparable" and data["rows"] == []
    anyway = json.loads(compare(runs["a"], runs["b"], "--json", "--anyway").stdout)
    assert anyway["gate"]["verdict"] == "diverges" and anyway["plan_differences"] == data["plan_differences"]


def test_runs_of_the_same_plan_compare_as_before(runs) -> None:
    result = compare(runs["a"], runs["a_again"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "different work" not in result.stdout and "verdict: reproduces within noise" in result.stdout
    assert json.loads(compare(runs["a"], runs["a_again"], "--json").stdout)["plan_differences"] == []


def test_report_with_a_prior_of_other_work_says_not_comparable_with_the_differences(runs) -> None:
    outcome = write_report(runs["b"], prior=runs["a"], plots=False)
    md = outcome.summary_md.read_text()
    lines = md.splitlines()
    head = next(line for line in lines if line.startswith("## Reproduction of"))
    assert head.endswith(": **not comparable**"), head
    section = lines[lines.index(head) : lines.index(head) + 8]
    assert "the runs measured different work:" in section and "| phase replay: max_tokens | 16 | 8 |" in section
    assert not any(line.startswith("| split1 | ms/token") for line in lines)  # no Δ row to read as a verdict
    summary = read_json(runs["b"] / "summary.json")
    assert summary["plan_differences"] == [{"what": "phase replay: max_tokens", "a": "16", "b": "8"}]
    repro = next(g for g in summary["gates"] if g["name"] == "reproduction")
    assert repro["verdict"] == "not comparable" and summary["reproduction_rows"] == []
    assert "the runs measured different work: phase replay: max_tokens: 16 (A) vs 8 (B)" in repro["failed_criteria"]


def test_report_with_a_prior_of_the_same_work_keeps_its_verdict(runs) -> None:
    write_report(runs["a_again"], prior=runs["a"], plots=False)
    summary = read_json(runs["a_again"] / "summary.json")
    repro = next(g for g in summary["gates"] if g["name"] == "reproduction")
    assert repro["verdict"] == "reproduces within noise" and summary["plan_differences"] == []
    assert "## Reproduction of" in (runs["a_again"] / "summary.md").read_text()


def test_a_baseline_with_no_data_reads_no_data_never_baseline(tmp_path: Path) -> None:
    run = measured_run(tmp_path / "run", {"split8": 4.0})  # the baseline split1 never measured
    write_report(run, plots=False)
    summary = read_json(run / "summary.json")
    assert summary["verdicts"]["split1"] == "baseline: no data"
    assert {a["arm"]: a["verdict"] for a in summary["arms"]}["split1"] == "baseline: no data"
    headline = next(line for line in (run / "summary.md").read_text().splitlines() if line.startswith("| split1 |"))
    assert "**baseline: no data**" in headline
    console = Console(record=True, width=250)
    console.print(summary_table(RunDir(run)))
    row = next(line for line in console.export_text().splitlines() if line.startswith("│ split1"))
    assert row.rstrip(" │").endswith("baseline: no data"), row


def test_a_measured_baseline_is_still_the_baseline(runs) -> None:
    write_report(runs["a"], plots=False)
    assert read_json(runs["a"] / "summary.json")["verdicts"]["split1"] == "baseline"
