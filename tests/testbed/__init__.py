"""Tests of runners/testbed."""
