"""Unified-memory watchdog: samplers, policy, the guard process."""
