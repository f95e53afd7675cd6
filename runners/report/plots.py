"""The PNG plots of a run's evidence report: TTFT and TPOT CDFs, wall time per arm, throughput vs TTFT p99.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, no display, no global state), rendered
to bytes without the `Software` stamp so equal data gives equal files, and written atomically. A plot
with no data is not written and `PlotSet.skipped` says why; so is a plot that fails to draw, without
costing the others. Each arm keeps its colour (`C0`, `C1`, ... in plan order) across the plots.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from runners.evidence.pareto import pareto_frontier
from runners.evidence.results import PhaseResult, RunResults
from runners.run.files import write_atomic

FIGSIZE_IN = (7.5, 4.8)
DPI = 100
LOG_SCALE_DECADES = 2.0


class NoPlotData(Exception):
    """A plot has nothing to show; the message says what is missing."""


@dataclass(frozen=True)
class PlotSet:
    """What `write_plots` wrote, and `<name>: <reason>` for every plot it did not write."""

    written: tuple[Path, ...]
    skipped: tuple[str, ...]


def _new_axes(results: RunResults, title: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(f"{results.run_id}\n{title}", fontsize=10)
    axes.grid(True, alpha=0.3)
    return figure, axes


def _colours(results: RunResults) -> dict[str, str]:
    return {arm.name: f"C{i % 10}" for i, arm in enumerate(results.arms)}


def _done_phases(results: RunResults, phase_name: str | None) -> dict[str, list[PhaseResult]]:
    """Per arm that has any: the named phase, or every primary phase when the name is None, with done repetitions."""
    phases: dict[str, list[PhaseResult]] = {}
    for arm in results.arms:
        if phase_name is None:
            done = [p for p in arm.phases.values() if p.mode == "primary" and p.reps_done]
        else:
            done = [p] if (p := arm.phase(phase_name)) is not None else []
        if done:
            phases[arm.name] = done
    return phases


def _cdf_figure(
    results: RunResults,
    phase_name: str | None,
    label: str,
    metric: Callable[[PhaseResult], tuple[float, ...]],
    missing: str,
) -> Figure:
    """Per-arm empirical CDFs of `metric` (ms per request) over `phase_name`, or every primary phase when None."""
    phases = _done_phases(results, phase_name)
    values = {arm: pooled for arm, done in phases.items() if (pooled := [v for p in done for v in metric(p)])}
    where = f"phase {phase_name}" if phase_name else "the primary phases (pooled)"
    if not values:
        raise NoPlotData(f"{missing if phases else 'no done repetition'} in {where}")
    figure, axes = _new_axes(results, f"{label} CDF per arm, {where}")
    colours = _colours(results)
    for arm, samples in values.items():
        axes.ecdf(samples, label=f"{arm} (n={len(samples)})", color=colours[arm])
    low = min(min(s) for s in values.values())
    high = max(max(s) for s in values.values())
    if low > 0 and math.log10(high / low) > LOG_SCALE_DECADES:
        axes.set_xscale("log")
    axes.set_xlabel(f"{label} (ms)")
    axes.set_ylabel("fraction of requests")
    axes.set_ylim(0, 1.02)
    axes.legend(loc="lower right", fontsize=8)
    return figure


def draw_ttft_cdf(results: RunResults) -> Figure:
    """TTFT CDF per arm over the deciding wall phase (every primary phase when the plan has none)."""
    return _cdf_figure(results, results.deciding_phases().wall, "TTFT", lambda p: p.ttft_ms, "no successful request")


def draw_tpot_cdf(results: RunResults) -> Figure:
    """TPOT CDF per arm over the deciding TPOT phase (every primary phase when the plan has none)."""
    phase_name = results.deciding_phases().tpot
    return _cdf_figure(results, phase_name, "TPOT", lambda p: p.tpot_ms, "no request with more than one output token")


def draw_wall_per_arm(results: RunResults) -> Figure:
    """Wall time per arm in the deciding wall phase: mean bar, each repetition a dot, ±1 sample s.d."""
    phase_name = results.deciding_phases().wall
    if phase_name is None:
        raise NoPlotData("the plan has no timed primary phase")
    phases = [(arm.name, p) for arm in results.arms if (p := arm.phase(phase_name)) is not None]
    if not phases:
        raise NoPlotData(f"no arm has a done repetition of phase {phase_name}")
    figure, axes = _new_axes(results, f"wall time per arm, phase {phase_name} (bar: mean, dots: reps, ±1 s.d.)")
    colours = _colours(results)
    for x, (arm, phase) in enumerate(phases):
        baseline = arm == results.baseline
        axes.bar(x, phase.wall_mean_s, color=colours[arm], alpha=0.6, hatch="//" if baseline else None)
        axes.scatter([x] * len(phase.wall_s), phase.wall_s, color="black", s=16, zorder=3)
        if phase.wall_std_s is not None:
            axes.errorbar(x, phase.wall_mean_s, yerr=phase.wall_std_s, fmt="none", ecolor="black", capsize=8)
    axes.set_xticks(range(len(phases)), [f"{arm}\n(baseline)" if arm == results.baseline else arm for arm, _ in phases])
    axes.set_xlabel("arm")
    axes.set_ylabel("wall time per repetition (s)")
    return figure


def draw_pareto(results: RunResults) -> Figure:
    """Output tokens/s against TTFT p99, one point per arm and primary phase, with the Pareto frontier."""
    points: list[tuple[str, str, float, float]] = []
    for arm in results.arms:
        for phase in arm.phases.values():
            ttft, tok_s = phase.ttft_p99_ms, phase.stats.output_tok_s
            if phase.mode == "primary" and phase.reps_done and ttft is not None and tok_s is not None:
                points.append((arm.name, phase.phase, ttft, tok_s))
    if not points:
        raise NoPlotData("no primary phase with both a TTFT p99 and an output throughput")
    figure, axes = _new_axes(results, "output throughput vs TTFT p99 per arm and primary phase")
    axes.margins(0.15)
    colours = _colours(results)
    for arm, phase, ttft, tok_s in points:
        axes.scatter(ttft, tok_s, color=colours[arm], s=30, zorder=3)
        axes.annotate(f"{arm}/{phase}", (ttft, tok_s), textcoords="offset points", xytext=(5, 4), fontsize=8)
    # the staircase bounds what the frontier dominates: down from its first point, right from its last
    xlim, ylim = axes.get_xlim(), axes.get_ylim()
    flags = pareto_frontier([(tok_s, ttft) for _, _, ttft, tok_s in points])
    frontier = sorted({(ttft, tok_s) for (_, _, ttft, tok_s), on in zip(points, flags, strict=True) if on})
    xs, ys = zip(*frontier, strict=True)
    axes.step(
        [xs[0], *xs, xlim[1]], [ylim[0], *ys, ys[-1]], where="post", color="grey", ls="--", label="Pareto frontier"
    )
    axes.set(xlim=xlim, ylim=ylim)
    axes.set_xlabel("TTFT p99 (ms), lower is better")
    axes.set_ylabel("output throughput (tokens/s), higher is better")
    axes.legend(loc="best", fontsize=8)
    return figure


PLOTS: tuple[tuple[str, Callable[[RunResults], Figure]], ...] = (
    ("ttft_cdf.png", draw_ttft_cdf),
    ("tpot_cdf.png", draw_tpot_cdf),
    ("wall_per_arm.png", draw_wall_per_arm),
    ("pareto.png", draw_pareto),
)


def render_png(figure: Figure) -> bytes:
    """The figure as PNG bytes, without the `Software` stamp so equal figures give equal bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def write_plots(results: RunResults, out_dir: Path) -> PlotSet:
    """Write every plot of `results` that has data into `out_dir`; the rest are named in `skipped` with why.

    A skipped plot's PNG from an earlier report is removed, so the directory matches the report.
    """
    written: list[Path] = []
    skipped: list[str] = []
    for name, draw in PLOTS:
        path = out_dir / name
        try:
            write_atomic(path, render_png(draw(results)))
            written.append(path)
            continue
        except NoPlotData as exc:
            reason = str(exc)
        except Exception as exc:  # a plot that fails to draw or write must not cost the others
            reason = f"{type(exc).__name__}: {exc}"
        skipped.append(f"{name}: {reason}")
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
    return PlotSet(tuple(written), tuple(skipped))
