"""The engine's start-up checks on the CuTe kernel set, on a GPU: what `python -m engine.server --kernels cute` runs.

`check_decode_kernels` goes through the set's own entry points (`cute_kernels()`: per-row W_O and MLP, bf16 KV pages),
so these cover the wrappers the model calls as well as the kernels, at the embedded engine's shapes for every
wo_split and at the issue's production-like shapes. The model itself is not built here (its config needs pydantic,
which the GPU machine's image lacks); `tests/engine/test_cute_launch_signatures.py` checks its launches on CPU.
Skipped without a GPU or the CuTe DSL, with the reason.
"""

from __future__ import annotations

import pytest
import torch

from engine.kernels.backend import ModelShapes
from engine.kernels.decode_checks import check_decode_kernels
from engine.kernels.wo_split_values import VALID_WO_SPLITS
from engine.kv_pages import PAGE_SIZE

pytest.importorskip("cutlass", reason="nvidia-cutlass-dsl is not installed: pip install nvidia-cutlass-dsl==4.8.1")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="launching the kernels needs a CUDA GPU")

# configs/engine-tiny.toml: hidden 256, 8 heads (head_dim 32), 2 KV heads, ffn 768 (6 MLP slots of 128), 4 KV splits.
TINY = {"hidden": 256, "heads": 8, "kv_heads": 2, "head_dim": 32, "ffn": 768, "mlp_slots": 6, "kv_splits": 4}
# The bench's issue shapes: W_O K = 24 · 256 = 6144, N = 5120; GQA 24 / 4, D 256; MLP 5120 x 17408 (136 slots).
ISSUE = {"hidden": 5120, "heads": 24, "kv_heads": 4, "head_dim": 256, "ffn": 17408, "mlp_slots": 136, "kv_splits": 8}
EXPECTED = [
    ("wo_split_gemv", "bit-exact"), ("wo_split_gemv", "tolerance"), ("paged_attention", "ones"),
    ("paged_attention", "tolerance"), ("paged_attention", "repeat"), ("fused_mlp", "tolerance"),
]  # fmt: skip


def run_checks(shape: dict, wo_split: int, seed: int = 0) -> list:
    from engine.kernels.backend import cute_kernels

    m = ModelShapes(**shape, wo_split=wo_split, page_size=PAGE_SIZE)
    return check_decode_kernels(cute_kernels(), m, torch.device("cuda"), seed)


@pytest.mark.parametrize("wo_split", VALID_WO_SPLITS)
def test_the_engine_start_up_checks_pass_on_the_cute_set_at_the_tiny_model_shapes(wo_split):
    checks = run_checks(TINY, wo_split)
    assert [(c.kernel.split("[")[0], c.check) for c in checks] == EXPECTED
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    exact = checks[0]
    assert exact.max_abs == 0.0, exact


def test_the_engine_start_up_checks_pass_on_the_cute_set_at_the_issue_shapes():
    checks = run_checks(ISSUE, wo_split=4, seed=3)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
