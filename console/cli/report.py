"""`gb10-console report RUN_DIR` and `gb10-console compare RUN_A RUN_B`: evidence regenerated from run directories.

`report` rewrites summary.md, summary.json and plots/*.png from the run directory alone (at any
time, also while the soak runs). `compare` prints the reproduction Δ% tables of RUN_B against the
prior RUN_A and the verdict; its exit code is 0 when RUN_B reproduces RUN_A within noise, 1 when
it diverges, 2 when the runs cannot be read or have nothing in common to compare. Two runs whose
plans measured different work (runners/gates/plan_diff.py) are not compared: `compare` lists what
differs and exits 3, unless `--anyway` asks for the verdict (printed below the differences, with
the verdict's exit code).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from console.cli.command import Subparsers
from runners.evidence.results import load_run_results
from runners.gates.evaluate import repro_inputs, work_differences
from runners.gates.plan_diff import DIFFERENT_WORK, PlanDifference
from runners.gates.reproduction import DeltaRow, not_comparable, reproduction_gate
from runners.report.summary import delta_cells, write_report

EXIT_DIVERGES = 1
EXIT_NO_DATA = 2
EXIT_NOT_COMPARABLE = 3


def register(sub: Subparsers) -> None:
    """Add `report` and `compare`."""
    report = sub.add_parser("report", help="regenerate summary.md, summary.json and plots of a run directory")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--prior", type=Path, metavar="RUN_DIR", help="also judge reproduction of this prior run")
    report.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    report.set_defaults(handler=report_run)
    compare = sub.add_parser("compare", help="Δ%% tables and reproduction verdict of RUN_B against the prior RUN_A")
    compare.add_argument("run_a", type=Path, metavar="RUN_A", help="the prior (reference) run directory")
    compare.add_argument("run_b", type=Path, metavar="RUN_B", help="the run that should reproduce it")
    compare.add_argument("--json", action="store_true", help="print the verdict, rows and plan differences as JSON")
    compare.add_argument(
        "--anyway", action="store_true",
        help="give the verdict even when the plans measured different work (the differences are printed above it)",
    )  # fmt: skip
    compare.set_defaults(handler=compare_runs)


def report_run(args: argparse.Namespace, out: Console) -> int:
    """`report`: rewrite the run's summary.md, summary.json and plots; print where they are and the verdicts."""
    outcome = write_report(args.run_dir, prior=args.prior, plots=not args.no_plots)
    out.print(f"summary: {outcome.summary_md}", highlight=False)
    for plot in outcome.plots:
        out.print(f"plot:    {plot}", highlight=False)
    for note in outcome.plot_notes:
        out.print(f"[yellow]not drawn:[/yellow] {note}", highlight=False)
    for arm, verdict in outcome.gates.verdicts.items():
        out.print(f"{arm}: [b]{verdict}[/b]", highlight=False)
    return 0


def _delta_table(title: str, rows: list[DeltaRow]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("metric", "prior", "current", "Δ", "bound", "within"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    colour = {True: "green", False: "red", None: "dim"}
    for r in rows:
        prior, current, delta, bound, within = delta_cells(r)
        table.add_row(f"{r.metric} ({r.unit})", prior, current, delta, bound,
                      f"[{colour[r.within]}]{within}[/{colour[r.within]}]")  # fmt: skip
    return table


def _differences_table(differences: list[PlanDifference]) -> Table:
    table = Table(show_header=True)
    for col in ("what differs", "RUN_A (prior)", "RUN_B"):
        table.add_column(col, overflow="fold")
    for d in differences:
        table.add_row(d.what, d.a, d.b)
    return table


def compare_runs(args: argparse.Namespace, out: Console) -> int:
    """`compare`: the Δ% tables and reproduction verdict; exit 0 reproduces, 1 diverges, 2 nothing to compare,
    3 the plans measured different work (no verdict unless `--anyway`)."""
    prior, current = load_run_results(args.run_a), load_run_results(args.run_b)
    differences = work_differences(prior, current)
    g = current.gates
    if differences and not args.anyway:
        gate, rows = not_comparable(differences), []
        code = EXIT_NOT_COMPARABLE
    else:
        gate, rows = reproduction_gate(repro_inputs(prior), repro_inputs(current), g.reproduce_tolerance_pct,
                                       g.reproduce_gsm8k_questions)  # fmt: skip
        code = {"pass": 0, "fail": EXIT_DIVERGES}.get(gate.status, EXIT_NO_DATA)
    if args.json:
        print(orjson.dumps({"prior": prior.run_id, "current": current.run_id, "gate": gate.as_dict(),
                            "rows": [r.as_dict() for r in rows],
                            "plan_differences": [d.as_dict() for d in differences]}).decode())  # fmt: skip
        return code
    out.print(f"prior:   {prior.run_id} ({prior.root})", highlight=False)
    out.print(f"current: {current.run_id} ({current.root})", highlight=False)
    if differences:
        out.print(f"[yellow]{DIFFERENT_WORK}:[/yellow]", highlight=False)
        out.print(_differences_table(differences))
    if code == EXIT_NOT_COMPARABLE:
        out.print(f"{gate.verdict}: no verdict; `--anyway` gives one regardless", highlight=False)
        return code
    for arm in dict.fromkeys(r.arm for r in rows):
        out.print(_delta_table(f"arm {arm}", [r for r in rows if r.arm == arm]))
    for key, label in (("arms_only_in_prior", "only in the prior run"), ("arms_only_in_current", "only in this run")):
        if gate.numbers.get(key):
            out.print(f"arms {label}: {', '.join(gate.numbers[key])}", highlight=False)
    verdict = gate.verdict or "no data: nothing measured in both runs to compare"
    colour = {"pass": "green", "fail": "red"}.get(gate.status, "yellow")
    anyway = " (of runs that measured different work)" if differences else ""
    out.print(f"verdict: [{colour}][b]{verdict}[/b][/{colour}]{anyway}", highlight=False)
    for criterion in gate.failed_criteria:
        out.print(f"  - {criterion}", highlight=False)
    return code
