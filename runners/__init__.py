"""Headless core: plans, serve runtimes, replay, soak orchestration and evidence. Never imports the UI."""
