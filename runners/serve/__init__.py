"""Serve targets behind one protocol: start, wait_ready, probe, stop, kill, logs, inspect."""
