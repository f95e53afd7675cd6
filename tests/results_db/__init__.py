"""Tests of results_db."""
