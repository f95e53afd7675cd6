"""Soak orchestration: one runner session over a run directory, step by step, and its entry points."""
