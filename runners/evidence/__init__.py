"""Evidence a reviewer can trust: results read back from a run directory, reports, plots, comparisons."""
