"""The engine under test: decode kernels, a tiny decoder-only model, and an OpenAI-compatible server."""
