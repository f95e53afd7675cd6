"""StepTree: the plan's steps as arm -> step leaves, each labelled with its status, progress and clock."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from console.views.run_view import RunView, StepView
from runners.plan.steps import StepKey


def step_label(step: StepView, now: float) -> Text:
    """One step's line: icon, phase, rep, mode, requests done of total, seconds run (and paused), why it failed."""
    key = step.key
    progress = f" {step.completed}/{step.total}" if step.total else ""
    took = step.duration(now)
    clock = f" {took:.0f}s" if took is not None else ""
    paused = step.paused_total(now)
    if paused >= 1:
        clock += f" (paused {paused:.0f}s)"
    reason = f" — {step.reason[:60]}" if step.status == "failed" and step.reason else ""
    return Text(f"{step.icon} {key.phase} #{key.rep} ({key.mode}){progress}{clock}{reason}")


class StepTree(Tree[None]):
    """Every step of the plan under its arm; a step's node is relabelled only when its text changed."""

    def __init__(self, **kwargs) -> None:
        super().__init__("steps", **kwargs)
        self._step_nodes: dict[StepKey, TreeNode] = {}
        self._planned = False

    def on_mount(self) -> None:
        """Name the panel."""
        self.border_title = "arm → phase"

    def update_view(self, view: RunView, now: float) -> None:
        """Show `view`'s steps: the first call builds the tree, later ones relabel what changed."""
        if not self._planned:
            self._plan(view, now)
            return
        for key, node in self._step_nodes.items():
            label = step_label(view.steps[key], now)
            if label.plain != node.label.plain:
                node.set_label(label)

    def _plan(self, view: RunView, now: float) -> None:
        self._planned = True
        self.root.set_label(f"plan {view.plan}")
        self.root.expand()
        arms: dict[str, TreeNode] = {}
        for key, step in view.steps.items():
            if key.arm not in arms:
                arms[key.arm] = self.root.add(Text(key.arm), expand=True)
            self._step_nodes[key] = arms[key.arm].add_leaf(step_label(step, now))
