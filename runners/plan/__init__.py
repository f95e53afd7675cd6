"""Soak plans: TOML -> validated models (serve target, arms, phases, gates, watchdog) and their step order."""
