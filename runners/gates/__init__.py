"""Gates: pure functions over measured results that return explained verdicts (GateResult)."""
