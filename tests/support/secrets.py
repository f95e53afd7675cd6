"""Planted secrets for the tests that look for them: a two-arm plan of the embedded engine whose arm env and
`[serve] env` carry distinctive values (credential-like names, names no pattern catches, a `{ from_env = NAME }`),
and a search of text or bytes for any of them."""

from __future__ import annotations

from pathlib import Path

from tests.support.plans import Plan, engine_serve, sharegpt_phase

PLANTED = {
    "OPENAI_API_KEY": "sk-planted-openai-5f1c",
    "HUGGING_FACE_HUB_TOKEN": "hf_plantedhub7d2e",
    "NGC_KEY": "ngc-planted-9a3b",
    "WANDB_KEY": "wandb-planted-4c8d",
    "MISC_SETTING": "misc-planted-0e6f",  # no secret-looking name, same in both arms: hidden by default
}
FROM_ENV = ("GB10_TEST_PLANTED_HF", "hf_plantedfromenv3b1a")


def planted_plan(directory: Path) -> Path:
    """The plan, written to `directory`; the runner needs FROM_ENV set in its environment."""
    serve = {"kind": "process", "ready_timeout_s": 60, **engine_serve(),
             "env": {"HF_TOKEN": {"from_env": FROM_ENV[0]}, "VLLM_LOGGING_LEVEL": "INFO"}}  # fmt: skip
    arms = [{"name": name, "env": {"CUTE_WO_SPLIT": split, **PLANTED}} for name, split in (("s1", "1"), ("s8", "8"))]
    phase = sharegpt_phase(requests=2, concurrency=2, max_tokens=4, ignore_eos=True, http_timeout_s=30)
    return Plan("planted", serve, arms, [phase]).write(directory)


def planted_in(data: bytes) -> list[str]:
    """The planted values found in `data`."""
    return [v for v in [*PLANTED.values(), FROM_ENV[1]] if v.encode() in data]
