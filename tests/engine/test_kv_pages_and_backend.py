"""The paged KV cache and the choice of decode kernels (torch references or CuTe DSL)."""

from __future__ import annotations

import dataclasses
import gc
import subprocess
import sys

import pytest
import torch

from engine.config import ModelConfig, load_engine_config
from engine.kernels.backend import TORCH_KERNELS, ModelShapes, cute_shape_check, select_kernels
from engine.kernels.cute.build import CuteUnavailableError
from engine.kernels.wo_split_values import VALID_WO_SPLITS, WoSplitError
from engine.kv_pages import PAGE_SIZE, PagePool, batch_tables, new_cache
from engine.model import KV_SPLITS, TinyDecoder, mlp_slots
from engine.tokenizer import encode
from tests.support.project import ENGINE_CONFIG

CPU = torch.device("cpu")


def test_pages_are_handed_out_returned_on_collection_and_the_pool_grows() -> None:
    pool = PagePool(layers=1, kv_heads=1, head_dim=4, device=CPU, dtype=torch.float32, page_size=4, initial_pages=4)
    a = new_cache(pool, 9)  # 3 pages
    assert a.pages == [0, 1, 2] and a.capacity == 12 and pool.free_pages == 1
    b = new_cache(pool, 8)  # 2 pages: the pool doubles
    assert pool.total_pages == 8 and len(set(a.pages) | set(b.pages)) == 5
    del a
    gc.collect()
    assert pool.free_pages == 8 - 2
    c = new_cache(pool, 4)
    assert c.pages[0] in (0, 1, 2)  # a freed page is reused before fresh ones


def test_slots_and_batch_tables_follow_the_block_table() -> None:
    pool = PagePool(layers=1, kv_heads=1, head_dim=2, device=CPU, dtype=torch.float32, page_size=4, initial_pages=8)
    first, second = new_cache(pool, 8), new_cache(pool, 4)
    page, offset = first.slots(3, 3)  # tokens 3, 4, 5: end of page 0, start of page 1
    assert page.tolist() == [first.pages[0], first.pages[1], first.pages[1]] and offset.tolist() == [3, 0, 1]
    first.length, second.length = 6, 2
    table, lens = batch_tables([first, second])
    assert table.tolist() == [first.pages, [*second.pages, 0]] and lens.tolist() == [6, 2]
    assert table.dtype == lens.dtype == torch.int32


def test_decode_past_the_cache_capacity_is_refused_with_the_sizes() -> None:
    model = TinyDecoder(ModelConfig(layers=1, hidden=64, heads=4, kv_heads=2, ffn=128, max_model_len=64))
    cache = model.new_cache(16)
    model.prefill(encode("0123456789abcdef")[:16], cache)
    with pytest.raises(ValueError, match="exceeds the cache capacity 16"):
        model.decode([65], [cache])


def test_kernel_choice_on_a_machine_without_cuda_or_on_cpu() -> None:
    assert select_kernels("torch", CPU) is TORCH_KERNELS
    assert select_kernels("auto", CPU) is TORCH_KERNELS
    with pytest.raises(CuteUnavailableError, match="CUDA only"):
        select_kernels("cute", CPU)
    with pytest.raises(ValueError, match="'fast' is not one of auto, torch, cute"):
        select_kernels("fast", CPU)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on machines without CUDA")
def test_engine_refuses_cute_kernels_without_a_gpu_in_one_line() -> None:
    cmd = [sys.executable, "-m", "engine.server", "--config", str(ENGINE_CONFIG), "--kernels", "cute", "--port", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "refusing to start: --kernels cute" in result.stderr
    assert "Traceback" not in result.stderr


def model_shapes(cfg: ModelConfig, wo_split: int) -> ModelShapes:
    return ModelShapes(cfg.hidden, cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.ffn, wo_split, mlp_slots(cfg.ffn),
                       KV_SPLITS, PAGE_SIZE)  # fmt: skip


@pytest.mark.parametrize("wo_split", VALID_WO_SPLITS)
def test_the_cute_kernels_can_run_the_embedded_engine_at_every_split(wo_split: int) -> None:
    cute_shape_check(model_shapes(load_engine_config(ENGINE_CONFIG).model, wo_split))


def test_a_model_the_chosen_kernels_cannot_run_is_refused_before_it_serves() -> None:
    cfg = ModelConfig(layers=1, hidden=64, heads=4, kv_heads=1, ffn=128, max_model_len=64)  # K=64: 8 values per slot
    with pytest.raises(WoSplitError, match="multiple of 16"):
        cute_shape_check(model_shapes(cfg, 8))
    strict = dataclasses.replace(TORCH_KERNELS, check_shapes=cute_shape_check)
    with pytest.raises(WoSplitError, match="wo_split=8"):
        TinyDecoder(cfg, wo_split=8, kernels=strict)
    TinyDecoder(cfg, wo_split=4, kernels=strict)  # 16 values per slot: fine


def test_start_up_checks_cover_all_three_kernels_and_pass_for_the_torch_set() -> None:
    checks = TinyDecoder(ModelConfig(layers=1), wo_split=4).kernel_checks()
    assert [(c.kernel.split("[")[0], c.check) for c in checks] == [
        ("wo_split_gemv", "bit-exact"), ("wo_split_gemv", "tolerance"), ("paged_attention", "ones"),
        ("paged_attention", "tolerance"), ("paged_attention", "repeat"), ("fused_mlp", "tolerance"),
    ]  # fmt: skip
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]


def test_start_up_checks_catch_a_broken_attention_or_mlp() -> None:
    def attention_missing_the_last_token(q, k, v, table, lens, scale, splits):
        return TORCH_KERNELS.attention(q, k, v, table, (lens - 1).clamp(min=1), scale, splits)

    def mlp_missing_the_last_slot(x, w_gate, w_up, w_down, slots):
        width = w_gate.shape[0] // slots
        return TORCH_KERNELS.mlp(x, w_gate[:-width], w_up[:-width], w_down[:, :-width], slots - 1)

    def attention_that_raises(*_):
        raise RuntimeError("illegal memory access")

    broken = dataclasses.replace(
        TORCH_KERNELS, attention=attention_missing_the_last_token, mlp=mlp_missing_the_last_slot
    )
    results = TinyDecoder(ModelConfig(layers=1), kernels=broken).kernel_checks()
    failed = {(c.kernel.split("[")[0], c.check) for c in results if not c.passed}
    assert failed == {("paged_attention", "tolerance"), ("fused_mlp", "tolerance")}
    raising = dataclasses.replace(TORCH_KERNELS, attention=attention_that_raises)
    checks = [c for c in TinyDecoder(ModelConfig(layers=1), kernels=raising).kernel_checks() if not c.passed]
    assert [c.check for c in checks] == ["ones", "tolerance", "repeat"]
    assert all(c.max_abs is None and "RuntimeError: illegal memory access" in c.detail for c in checks)
