"""`gb10-console bench`: the replay client against a loopback mock server, the guard's reaction to a real
memory hog, and the decode kernels (timed, or compiled only). The mock server and the hog are in
runners/testbed, shared with the tests."""
