"""Evidence a reviewer can trust: a run directory read back into typed results (below the gates)."""
