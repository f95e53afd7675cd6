"""StepTree: the plan's steps as arm -> step leaves, each labelled with its status, progress and clock."""

from __future__ import annotations

import time

from rich.text import Text
from textual import events
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from console.views.run_view import RunView, StepView
from runners.plan.steps import StepKey


def step_label(step: StepView, now: float, width: int | None = None) -> Text:
    """One step's line: icon, phase, rep, mode, requests done of total, seconds run (and paused), why it failed.

    Longer than `width` cells: without the primary mode, and supplementary as `supp`."""
    key = step.key
    progress = f" {step.completed}/{step.total}" if step.total else ""
    took = step.duration(now)
    clock = f" {took:.0f}s" if took is not None else ""
    paused = step.paused_total(now)
    if paused >= 1:
        clock += f" (paused {paused:.0f}s)"
    reason = f" — {step.reason[:60]}" if step.status == "failed" and step.reason else ""
    label = Text(f"{step.icon} {key.phase} #{key.rep} ({key.mode}){progress}{clock}{reason}")
    if width is not None and label.cell_len > width:
        mode = " (supp)" if key.mode == "supplementary" else ""
        label = Text(f"{step.icon} {key.phase} #{key.rep}{mode}{progress}{clock}{reason}")
    return label


class StepTree(Tree[None]):
    """Every step of the plan under its arm; a step's node is relabelled only when its text changed, or when a
    new width shortens or lengthens it."""

    def __init__(self, **kwargs) -> None:
        super().__init__("steps", **kwargs)
        self._step_nodes: dict[StepKey, TreeNode] = {}
        self._planned = False
        self._view: RunView | None = None  # the view shown

    def on_mount(self) -> None:
        """Name the panel."""
        self.border_title = "arm → phase"

    def on_resize(self, event: events.Resize) -> None:
        """Fit the labels to the new width."""
        if self._view is not None:
            self.update_view(self._view, time.time())

    @property
    def label_width(self) -> int | None:
        """Cells a step's label has: the tree's width less two levels of guides (None before the first layout)."""
        width = self.scrollable_content_region.width
        return width - 2 * self.guide_depth if width else None

    def update_view(self, view: RunView, now: float) -> None:
        """Show `view`'s steps: the first call builds the tree, later ones relabel what changed."""
        self._view = view
        if not self._planned:
            self._plan(view, now)
            return
        width = self.label_width
        for key, node in self._step_nodes.items():
            label = step_label(view.steps[key], now, width)
            if label.plain != node.label.plain:
                node.set_label(label)

    def _plan(self, view: RunView, now: float) -> None:
        self._planned = True
        self.root.set_label(f"plan {view.plan}")
        self.root.expand()
        arms: dict[str, TreeNode] = {}
        width = self.label_width
        for key, step in view.steps.items():
            if key.arm not in arms:
                arms[key.arm] = self.root.add(Text(key.arm), expand=True)
            self._step_nodes[key] = arms[key.arm].add_leaf(step_label(step, now, width))
