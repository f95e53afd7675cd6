"""The run directory, the contract between runner, guard and console: files, state, events, control."""
