"""Benchmarks of the replay client, and the loopback mock server they run against."""
