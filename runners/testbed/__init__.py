"""Test infrastructure that is also a bench, one name for tests and benchmarks alike: the loopback mock server
(`gb10-console bench mock-server`), a real memory hog, the vLLM of `make vllm`, and a synthetic soak written into
a run directory."""
