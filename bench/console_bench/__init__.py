"""Benchmark of the Textual console (`RunConsole`) attached to a synthetic run directory, not shipped.

`python -m bench.console_bench [--quick] [--runs N] [--json OUT]` measures the console against the issue's
targets (`metrics`); the console is what is measured, attached to a synthetic soak (`runners.testbed`):

- responsiveness (`responsiveness`): key press to frame while 2,000 events/s arrive, and the backlog.
  Target: p95 < 50 ms and no growing backlog.
- memory_after_soak (`memory`): RSS after the console has folded an 8-hour history. Target: < 150 MB.
- idle_cpu (`idle_cpu`): CPU with the console attached to a soak at 1 Hz. Target: < 3 % of a core.
- attach (`attach`): `gb10-console attach --readonly RUN_DIR` in a fresh process on a pseudo-terminal, to the
  first frame it writes (imports included). Target: < 1 s.

In-process measurements run the console as `gb10-console attach --readonly` would, on a terminal driver that
renders every frame to a string and drops it (`harness`): the cost of a frame is in the numbers, a real
terminal's own drawing is not. Nothing in console/ is patched: folded events are counted through the views the
console itself creates (`harness.FoldCounter`, the message hook), frames by the driver.
"""
