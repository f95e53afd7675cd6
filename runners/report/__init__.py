"""Reports over a run's evidence and gates: summary.md/summary.json and the plots."""
