"""The results database: soak results from many runs in one SQLite file, for queries across runs."""
