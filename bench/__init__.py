"""Benchmarks that are not shipped: the console under load (`python -m bench.console_bench`)."""
