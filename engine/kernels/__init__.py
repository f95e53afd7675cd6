"""Decode kernels under test. Each has a torch reference that runs on CPU."""
