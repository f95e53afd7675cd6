"""Evidence from real runs: `report` on finished demo runs (tables, gates, plots), `compare` of two demo runs,
missing data, known limitations, and a kernel that fails its start-up checks end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.image import imread

from runners.evidence.results import load_run_results
from runners.gates.evaluate import evaluate_gates, registry_for, repro_inputs
from runners.gates.reproduction import reproduction_gate
from runners.report.summary import write_report
from runners.run.files import read_json, read_jsonl, write_json_atomic
from runners.run.rundir import create_run_dir
from tests.support.plans import PROFILED_PHASES, fault_plan, write_plan
from tests.support.processes import run_headless
from tests.support.project import ENGINE_CONFIG, ROOT

pytestmark = pytest.mark.slow
# the tests of the two demo runs (a module fixture) stay in one pytest-xdist worker, which makes them once
DEMO_RUNS_GROUP = pytest.mark.xdist_group("report-demo-runs")
CLI = [sys.executable, "-m", "console.cli"]
PLOTS = ("ttft_cdf.png", "tpot_cdf.png", "wall_per_arm.png", "pareto.png")


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two finished runs of the demo plan (the embedded engine, two W_O split arms), shortened."""
    root = tmp_path_factory.mktemp("demo")
    # The demo plan, shortened (the demo itself is tests/soak's): 12 requests of 64 tokens per step, not 32 of 160.
    text = (ROOT / "configs" / "demo.toml").read_text()
    for old, new in (
        ("requests = 32", "requests = 12"),
        ("max_tokens = 160", "max_tokens = 64"),
        ('engine_config = "engine-tiny.toml"', f"engine_config = {json.dumps(str(ENGINE_CONFIG))}"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    plan = root / "demo.toml"
    plan.write_text(text)
    runs = []
    for name in ("a", "b"):
        result = cli("run", str(plan), "--headless", "--out", str(root / name))
        assert result.returncode == 0, result.stderr + result.stdout
        runs.append(root / name)
    return runs[0], runs[1]


def copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def assert_real_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5_000, (path, len(data))
    pixels = imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert (pixels != pixels[0, 0]).any(), f"{path.name} is a single colour"


@DEMO_RUNS_GROUP
def test_the_runner_writes_the_report_and_plots_when_a_run_finishes(demo_runs: tuple[Path, Path]) -> None:
    run, _ = demo_runs
    summary = (run / "summary.md").read_text()
    assert "## Verdicts" in summary and "## Gates" in summary and "## Known limitations" in summary
    for name in PLOTS:
        assert_real_png(run / "plots" / name)
    written = [e for e in read_jsonl(run / "events.jsonl") if e["type"] == "summary_written"]
    assert written and written[-1]["verdicts"]["wo-split-1"] == "baseline" and len(written[-1]["plots"]) == 4


@DEMO_RUNS_GROUP
def test_report_regenerates_the_summary_and_plots_from_the_run_dir_alone(demo_runs, tmp_path: Path) -> None:
    run = copy_run(demo_runs[0], tmp_path / "run")
    first = (run / "summary.md").read_text()
    (run / "summary.md").unlink()
    (run / "summary.json").unlink()
    shutil.rmtree(run / "plots")
    result = cli("report", str(run))
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"summary: {run / 'summary.md'}" in result.stdout and "wo-split-8: " in result.stdout
    again = (run / "summary.md").read_text()
    assert again == first.replace(str(demo_runs[0]), str(run))  # the same evidence, wherever the directory is
    for name in PLOTS:
        assert_real_png(run / "plots" / name)
    lines = again.splitlines()
    headline = lines[lines.index("## Verdicts") : lines.index("## Gates")]
    rows = {ln.split(" | ")[0].lstrip("| "): ln for ln in headline if ln.startswith("| wo-split-")}
    assert set(rows) == {"wo-split-1", "wo-split-8"}
    assert "**baseline**" in rows["wo-split-1"]
    # timing decides: slower -> keep opt-in; faster but without a GSM8K phase -> no verdict (never a candidate)
    assert any(v in rows["wo-split-8"] for v in ("**keep opt-in**", "**no verdict**"))
    summary = read_json(run / "summary.json")
    assert summary["baseline"] == "wo-split-1" and summary["deciding_phases"]["wall"] == "sharegpt"
    gates = {(g["arm"], g["name"]): g for g in summary["gates"]}
    assert gates[("wo-split-8", "kernel-correctness")]["status"] == "pass"  # the engine's own start-up checks
    assert gates[("wo-split-8", "mechanism")]["status"] == "pass"
    assert gates[("wo-split-8", "quality")]["status"] == "no_data"  # the demo has no GSM8K phase
    assert "GSM8K: no score" in gates[("wo-split-8", "quality")]["failed_criteria"][0]
    candidate = gates[("wo-split-8", "default-candidate")]
    withheld = any(gates[("wo-split-8", name)]["status"] == "fail" for name in ("measurement", "env"))
    # a measurement the cross-check cannot trust (a noisy, loaded machine) withholds the candidate's verdict
    assert summary["verdicts"]["wo-split-8"] == ("no verdict" if withheld else candidate["verdict"] or "no verdict")
    assert candidate["verdict"] != "default candidate"  # never without a GSM8K score
    assert summary["plots"] == [f"plots/{name}" for name in PLOTS]


@DEMO_RUNS_GROUP
def test_compare_two_demo_runs_prints_delta_tables_and_a_verdict(demo_runs: tuple[Path, Path]) -> None:
    a, b = demo_runs
    result = cli("compare", str(a), str(b))
    assert result.returncode in (0, 1), result.stderr + result.stdout  # two real runs: either verdict is honest
    out = result.stdout
    assert "arm wo-split-1" in out and "arm wo-split-8" in out and "ms/token (ms)" in out and "wall mean (s)" in out
    verdict = "reproduces within noise" if result.returncode == 0 else "diverges"
    assert f"verdict: {verdict}" in out
    as_json = json.loads(cli("compare", str(a), str(b), "--json").stdout)
    assert as_json["gate"]["verdict"] == verdict and {r["arm"] for r in as_json["rows"]} == {"wo-split-1", "wo-split-8"}
    ms = [r for r in as_json["rows"] if r["metric"] == "ms/token"]
    assert all(r["prior"] > 0 and r["current"] > 0 and r["delta"] is not None for r in ms)
    same = cli("compare", str(a), str(a))
    assert same.returncode == 0 and "verdict: reproduces within noise" in same.stdout


@DEMO_RUNS_GROUP
def test_report_with_a_prior_run_adds_the_reproduction_table(demo_runs, tmp_path: Path) -> None:
    run = copy_run(demo_runs[1], tmp_path / "run")
    outcome = write_report(run, prior=demo_runs[0], plots=False)
    summary = outcome.summary_md.read_text()
    assert f"## Reproduction of `{load_run_results(demo_runs[0]).run_id}`" in summary
    assert "| wo-split-8 | ms/token (ms) |" in summary
    assert any(g.name == "reproduction" for g in outcome.gates.gates)


@DEMO_RUNS_GROUP
def test_missing_steps_give_no_data_and_limitations_never_a_crash(demo_runs, tmp_path: Path) -> None:
    run = copy_run(demo_runs[0], tmp_path / "run")
    shutil.rmtree(run / "done" / "wo-split-8")
    eff = read_json(run / "arms" / "wo-split-1" / "effective.json")
    unverified = {**eff, "reported": None, "verified": False, "status": "unverified", "verified_by": None,
                  "reason": "the target reported nothing"}  # fmt: skip
    write_json_atomic(run / "arms" / "wo-split-1" / "effective.json", unverified)
    (run / "arms" / "wo-split-1" / "primary" / "sharegpt" / "0.incomplete-1").mkdir()
    outcome = write_report(run)
    results, gates = outcome.results, outcome.gates
    assert gates.verdicts["wo-split-8"] == "no verdict"
    candidate = next(g for g in gates.gates if g.name == "default-candidate")
    assert candidate.status == "no_data" and "wall time: no mean" in candidate.failed_criteria[0]
    text = "\n".join(results.limitations)
    assert "2 of 4 steps are not done" in text and "wo-split-8/primary/sharegpt/1: not run" in text
    assert "env unverified: arm wo-split-1" in text and "unfinished attempt" in text
    summary = outcome.summary_md.read_text()
    assert "| wo-split-8 | N/A | N/A | N/A | 0/2 |" in summary
    assert "| wo-split-1 | N/A | " in summary and "| 2/2 |" in summary
    assert "ttft_cdf.png" in "".join(str(p) for p in outcome.plots)  # the arm with data is still drawn


def test_report_on_a_run_that_never_ran_and_on_a_non_run(tmp_path: Path) -> None:
    plan = write_plan(tmp_path)
    run = create_run_dir(tmp_path / "fresh", tmp_path, plan, "mini", tmp_path)
    outcome = write_report(run.root)
    assert outcome.plots == () and outcome.plot_notes  # nothing to draw, and it says so
    assert set(outcome.gates.verdicts.values()) == {"baseline: no data", "no verdict"}  # nothing judged
    assert "2 of 2 steps are not done" in outcome.summary_md.read_text()
    result = cli("report", str(tmp_path))
    assert result.returncode == 2 and "is not a run directory" in result.stderr and "Traceback" not in result.stderr


def test_a_kernel_that_fails_its_start_up_checks_is_rejected(tmp_path: Path) -> None:
    command = ["{python}", "-m", "engine.server", "--config", str(ENGINE_CONFIG), "--host", "{host}", "--port",
               "{port}", "--env-dir", "{env_dir}", "--test-fault", "wo_drop_last_slot"]  # fmt: skip
    plan = write_plan(tmp_path, requests=3, concurrency=3, max_tokens=8, command=command)
    out = tmp_path / "run"
    result = run_headless(plan, out)
    assert result.returncode == 0, result.stderr + result.stdout  # measured anyway: the gate decides
    assert "KERNEL CHECK FAILED" in result.stdout
    failed = [e for e in read_jsonl(out / "events.jsonl") if e["type"] == "kernel_checks_failed"]
    assert {e["arm"] for e in failed} == {"split1", "split8"}
    results = load_run_results(out)
    report = evaluate_gates(results, registry_for(results))
    correctness = {g.arm: g for g in report.gates if g.name == "kernel-correctness"}
    assert correctness["split8"].status == "fail"
    assert "wo_split_gemv[wo_split=8] bit-exact" in correctness["split8"].failed_criteria[0]
    assert report.verdicts["split8"] == "reject"


def _edit_json(path: Path, change) -> None:
    data = read_json(path)
    change(data)
    write_json_atomic(path, data)


DAMAGE = {
    "corrupt phase.json": lambda step: (step / "phase.json").write_text("{corrupt"),
    "coherence not an object": lambda step: _edit_json(step / "phase.json", lambda d: d.update(coherence=[1])),
    "coherence count a word": lambda step: _edit_json(
        step / "phase.json", lambda d: d.update(coherence={"checked": "many", "with_warnings": None})
    ),
    "gsm8k without n": lambda step: _edit_json(step / "phase.json", lambda d: d.update(gsm8k={"strict_correct": "x"})),
    "spec counters garbage": lambda step: _edit_json(
        step / "phase.json",
        lambda d: d.update(server_metrics={"spec_decode_num_accepted_tokens_increase": "x", "scrapes_ok": "y"}),
    ),
    "stats garbage": lambda step: _edit_json(
        step / "phase.json", lambda d: d["stats"].update(output_tokens_from_chunks="x", goodput_req_s="fast")
    ),
    "request lines garbage": lambda step: (
        (step / "requests.jsonl")
        .open("a")
        .write(
            '{"foo": 1}\n{"index": 1, "endpoint": "chat", "prompt_source": "p", "prompt_chars": 1, "max_tokens": 1, '
            '"scheduled_ns": 0, "ttft_ns": "x"}\n[1, 2]\n'
        )
    ),
    "provenance garbage": lambda step: (step.parents[4] / "provenance.json").write_text(
        '{"host": "x", "gpu": [], "targets": {"s": "x"}, "sessions": 3}'
    ),
    "state.json corrupt": lambda step: (step.parents[4] / "state.json").write_text("{"),
    "effective.json garbage": lambda step: (step.parents[2] / "effective.json").write_text(
        '{"reported": 5, "mismatches": "x", "kernel_checks": [1, {"passed": "yes", "max_abs": "big"}]}'
    ),
    "events garbage": lambda step: (
        (step.parents[4] / "events.jsonl").open("a").write('[1]\n{"type": "step_failed", "step": {"arm": null}}\n"x"\n')
    ),
}


@pytest.mark.parametrize(
    "damage",
    [pytest.param(d, marks=pytest.mark.foreign_events) if d == "events garbage" else d for d in DAMAGE],
)
@DEMO_RUNS_GROUP
def test_damaged_evidence_is_left_out_and_named_never_a_traceback(demo_runs, tmp_path: Path, damage: str) -> None:
    run = copy_run(demo_runs[0], tmp_path / "run")
    DAMAGE[damage](run / "arms" / "wo-split-8" / "primary" / "sharegpt" / "1")
    result = cli("report", str(run), "--no-plots")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    results = load_run_results(run)
    if damage == "corrupt phase.json":  # the repetition is not counted as a 0 s one: it is left out and named
        assert results.arm("wo-split-8").phases["sharegpt"].reps_done == 1
        assert any("wo-split-8/primary/sharegpt/1: phase.json" in x for x in results.limitations)
    if damage == "request lines garbage":
        assert any("3 line(s) of requests.jsonl could not be read" in x for x in results.limitations)
        assert results.arm("wo-split-8").phases["sharegpt"].stats.requests == 2 * 12
    if damage == "state.json corrupt":  # read as damaged (never "created" or "unknown"), and what to do
        assert results.status == "damaged"
        assert any("state.json is damaged" in x and "--resume" in x for x in results.limitations)
    ingest = cli("results", "ingest", str(run), "--db", str(tmp_path / "r.db"))
    assert ingest.returncode == 0 and "Traceback" not in ingest.stderr, ingest.stderr
    compare = cli("compare", str(demo_runs[0]), str(run))
    assert compare.returncode in (0, 1, 2) and "Traceback" not in compare.stderr, compare.stderr


@DEMO_RUNS_GROUP
def test_an_oversized_trace_is_skipped_and_named(demo_runs, tmp_path: Path, monkeypatch) -> None:
    from runners.evidence import kernel_times

    run = copy_run(demo_runs[0], tmp_path / "run")
    profile = run / "arms" / "wo-split-1" / "primary" / "sharegpt" / "0" / "profile"
    profile.mkdir()
    event = {"ph": "X", "cat": "kernel", "name": "wo_gemv", "dur": 12.5}
    (profile / "small.json").write_text(json.dumps({"traceEvents": [event, {**event, "dur": 7.5}]}))
    (profile / "big.json").write_text(json.dumps({"traceEvents": [event] * 2000}))
    monkeypatch.setattr(kernel_times, "MAX_TRACE_BYTES", 10_000)
    results = load_run_results(run)
    times = results.arm("wo-split-1").kernel_times
    assert times["wo_gemv"].mean_us == 10.0 and times["wo_gemv"].count == 2 and times["wo_gemv"].source == "gpu"
    assert any("trace skipped" in x and "big.json" in x and "limit" in x for x in results.limitations)


def test_kernel_times_come_from_the_real_profiler_trace_and_feed_reproduction(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_headless(fault_plan(tmp_path, [], PROFILED_PHASES), out)
    assert result.returncode == 0, result.stderr + result.stdout
    traces = list((out / "arms" / "split4" / "supplementary" / "profiled" / "0" / "profile").glob("trace-*.json"))
    assert len(traces) == 1
    results = load_run_results(out)
    times = results.arm("split4").kernel_times
    assert times and all(t.source == "cpu" and t.count > 0 and t.mean_us >= 0 for t in times.values())
    assert any(name.startswith("aten::") for name in times)  # the engine's own torch operators
    gate, rows = reproduction_gate(repro_inputs(results), repro_inputs(results))
    assert gate.verdict == "reproduces within noise"
    assert sum(r.metric.startswith("kernel ") for r in rows) == len(times)
    summary = write_report(out, prior=out, plots=False).summary_md.read_text()
    assert "| split4 | kernel aten::" in summary
