"""CurrentStep: the step in flight (#current), its progress bar (#progress) and live latencies (#live)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar, Static

from console.views.run_view import RunView
from engine.units import number_text


class CurrentStep(Vertical):
    """What runs now: requests and tokens done, a progress bar, TTFT/TPOT/ITL percentiles and failures."""

    DEFAULT_CSS = "CurrentStep { height: auto; }"

    def compose(self) -> ComposeResult:
        """The step line, its progress bar and its live latencies."""
        yield Static("", id="current")
        yield ProgressBar(id="progress", show_eta=False)
        yield Static("", id="live")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._shown = ("", "")  # the step line and the latency line on screen

    def update_view(self, view: RunView, now: float) -> None:
        """Show `view`'s step in flight (with its time paused so far), or how many steps are done while none is."""
        step = view.current_step()
        bar = self.query_one("#progress", ProgressBar)
        if step is None:
            done = sum(s.status in ("done", "skipped") for s in view.steps.values())
            total = len(view.steps)
            bar.update(total=max(total, 1), progress=done)
            self._show(f"no step in flight; {done}/{total} steps done", "")
            return
        live = step.live
        tokens = live.get("output_tokens")
        paused = step.paused_text(now)
        if paused:
            paused = f"   {'PAUSED, ' if view.paused else ''}{paused} (not counted in wall time or ETA)"
        current = (
            f"▶ {step.key.path}: {step.completed}/{step.total} requests"
            + (f", {tokens:,} tokens" if isinstance(tokens, int) else "")
            + paused
        )
        bar.update(total=max(step.total, 1), progress=step.completed)
        errors = live.get("errors") or {}
        failed = f"   failed {step.failed}" + (
            f" ({', '.join(f'{k} {n}' for k, n in errors.items())})" if errors else ""
        )
        latencies = (
            f"TTFT p50/p95 {number_text(live.get('ttft_p50_ms'))}/{number_text(live.get('ttft_p95_ms'))} ms   "
            f"TPOT {number_text(live.get('tpot_p50_ms'), 2)}/{number_text(live.get('tpot_p95_ms'), 2)}   "
            f"ITL {number_text(live.get('itl_p50_ms'), 2)}/{number_text(live.get('itl_p95_ms'), 2)} ms"
            + (failed if step.failed else "")
        )
        self._show(current, latencies)

    def _show(self, current: str, latencies: str) -> None:
        """Redraw the lines that changed; one line each (app.tcss), so no new layout."""
        for line, text, shown in (("#current", current, self._shown[0]), ("#live", latencies, self._shown[1])):
            if text != shown:
                self.query_one(line, Static).update(text, layout=False)
        self._shown = (current, latencies)
