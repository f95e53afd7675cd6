"""Secrets never reach the evidence: env maps, Docker env lists and command lines are redacted."""

from __future__ import annotations

from runners.run.redact import REDACTED, is_secret, redact_argv, redact_env, redact_env_list, redact_inspect, redacted
from runners.serve.readiness import env_mismatches


def test_secret_names_are_recognised_and_ordinary_ones_are_not() -> None:
    """Tokens, keys, passwords and credentials are secret; kernel switches are not."""
    for name in ("HF_TOKEN", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "GH_AUTH", "api-key"):
        assert is_secret(name), name
    for name in ("CUTE_WO_SPLIT", "CUDA_VISIBLE_DEVICES", "HF_HUB_OFFLINE", "VLLM_LOGGING_LEVEL"):
        assert not is_secret(name), name


def test_env_maps_lists_and_argv_are_redacted() -> None:
    """Values go, names stay; option values after `--api-key` or in `--hf-token=X` go too."""
    want_env = {"HF_TOKEN": redacted("hf_abc"), "CUTE_WO_SPLIT": "4"}
    assert redact_env({"HF_TOKEN": "hf_abc", "CUTE_WO_SPLIT": "4"}) == want_env
    assert redact_env(None) is None
    want_list = [f"HF_TOKEN={redacted('hf_abc')}", "PATH=/bin", "EMPTY"]
    assert redact_env_list(["HF_TOKEN=hf_abc", "PATH=/bin", "EMPTY"]) == want_list
    argv = ["vllm", "serve", "m", "--api-key", "sk-1", "--hf-token=hf_2", "--port", "8000"]
    want = ["vllm", "serve", "m", "--api-key", REDACTED, f"--hf-token={REDACTED}", "--port", "8000"]
    assert redact_argv(argv) == want


def test_a_container_inspect_and_an_env_mismatch_never_show_a_secret() -> None:
    """container.json's Config.Env / Cmd / Args, and mismatch messages, carry no secret value."""
    data = {"Config": {"Env": ["HF_TOKEN=hf_abc"], "Cmd": ["--api-key", "sk"]}, "Args": ["--api-key=sk"]}
    text = str(redact_inspect(data))
    assert "hf_abc" not in text and "sk'" not in text and "sk]" not in text and REDACTED in text
    mismatches = env_mismatches({"HF_TOKEN": "hf_a", "CUTE_WO_SPLIT": "4"}, {"HF_TOKEN": "hf_b", "CUTE_WO_SPLIT": "8"})
    assert mismatches[1] == "CUTE_WO_SPLIT: want '4', target runs '8'"  # harmless: shown
    assert mismatches[0].startswith("HF_TOKEN: want '***redacted*** sha256:") and "hf_a" not in mismatches[0]
    assert "target runs '***redacted*** sha256:" in mismatches[0] and "hf_b" not in mismatches[0]
