"""Serve targets behind one protocol (start, wait_ready, probe, wait_exit, stop, kill, logs, inspect, provenance,
target_ref), built by `make.make_runtime` from a plan: a local process, a container, or a URL we do not own."""
