"""Tests of watchdog."""
