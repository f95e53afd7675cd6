"""The arguments the CuTe launchers pass at run time match what each kernel was compiled against; CPU only.

`cute.compile` traces each kernel against the fake tensors of the module's `_host_args`, and the compiled function
does not check the runtime tensors it is given later: it takes one memref descriptor pointer per argument, laid
out after the *compiled* signature. A runtime tensor with another dtype, alignment or static/dynamic layout is
silently misread on the GPU. These tests run the real launch code (`wo_gemv`, `fused_mlp`, `paged_attention`, the
`cute_kernels` wrappers and a model decode step) on CPU tensors, with only the CUDA checks, the stream and the
final call replaced, and compare every argument they pass with the compile-time fake in the same position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.config import load_engine_config
from engine.kernels import nvfp4
from engine.kernels.cute import build
from engine.kernels.cute import fused_mlp as cute_mlp
from engine.kernels.cute import paged_attention as cute_attn
from engine.kernels.cute import wo_gemv as cute_wo
from engine.kernels.wo_nvfp4 import prepare_wo
from engine.kernels.wo_split_values import VALID_WO_SPLITS

pytest.importorskip("cutlass", reason="nvidia-cutlass-dsl is not installed: pip install nvidia-cutlass-dsl==4.8.1")

ENGINE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "engine-tiny.toml"
MAX_RECORDED_CALLS = 512  # every test launches far fewer; a runaway loop fails instead of hanging


@dataclass
class Recorder:
    """Stands in for a compiled kernel: records each call's arguments, checks them, never runs anything."""

    compiled: Any
    fakes: tuple
    calls: list[tuple] = field(default_factory=list)

    def __call__(self, *args: Any) -> int:
        assert len(self.calls) < MAX_RECORDED_CALLS, "too many launches"
        self.calls.append(args)
        return 0


def host_param_count(compiled: Any) -> int:
    """Parameters of the compiled host function, read from its LLVM signature in the IR module."""
    for line in str(compiled.ir_module).splitlines():
        if line.strip().startswith(f"llvm.func @{compiled.function_name}("):
            return len(re.findall(r"%arg\d+:", line))
    raise AssertionError(f"no llvm.func @{compiled.function_name} in the compiled IR")


def layout_text(fake: Any) -> str:
    """The layout a runtime tensor's __cache_key__ ends with when it matches `fake` ("?" for dynamic modes)."""
    from cutlass.cute.typing import SymInt

    shape = ",".join("?" if isinstance(n, SymInt) else str(n) for n in fake.shape)
    stride = ",".join("?{i64}" if isinstance(n, SymInt) else str(n) for n in fake.stride)
    return f"({shape}):({stride})"


def assert_matches_signature(recorder: Recorder, args: tuple) -> None:
    """Every argument of one launch has the dtype, alignment and layout the kernel was compiled for."""
    import cutlass
    from cuda.bindings.driver import CUstream
    from cutlass.cute.runtime import make_fake_stream

    compiled, fakes = recorder.compiled, recorder.fakes
    names = compiled.execution_args._meta.all_names
    assert len(args) == len(fakes) == len(names), (len(args), len(fakes), names)
    fake_stream_type = type(make_fake_stream())
    for name, fake, arg in zip(names, fakes, args, strict=True):
        if isinstance(fake, fake_stream_type):
            assert isinstance(arg, CUstream), (name, type(arg))
        elif isinstance(fake, cutlass.Numeric):
            assert type(arg) is type(fake), (name, type(arg), type(fake))
        else:
            dtype, align, layout = arg.__cache_key__
            assert (dtype, align) == (fake.element_type, 16), (name, dtype, align, fake.element_type)
            assert layout.endswith(layout_text(fake)), (name, layout, layout_text(fake))
    exe_args, _ = compiled.execution_args.generate_execution_args(args, {})
    assert len(exe_args) == host_param_count(compiled)  # one C argument per compiled parameter, in order


@pytest.fixture
def no_gpu_launch(monkeypatch):
    """Lets the launchers run on CPU tensors: no CUDA check, a null stream, and recorders for the compiled kernels.

    The real `_launcher` / `_compiled` still run (they compile, which needs no GPU, and allocate the workspace on
    the tensors' device); only the compiled function is wrapped. Returns {kernel name: [recorders]}.
    """
    from cuda.bindings.driver import CUstream

    recorders: dict[str, list[Recorder]] = {"wo_gemv": [], "fused_mlp": [], "paged_attention": []}
    monkeypatch.setattr(build, "require_cuda", lambda *a, **k: None)
    for module in (cute_wo, cute_mlp, cute_attn):
        monkeypatch.setattr(module, "require_cuda", lambda *a, **k: None)
        monkeypatch.setattr(module, "current_stream", lambda device: CUstream(0))

    def wrap_launcher(module: Any, name: str) -> None:
        real = module._launcher.__wrapped__
        cached: dict = {}

        def launcher(shape, device):
            if (shape, device) not in cached:
                made = real(shape, device)
                recorder = Recorder(made.compiled, module._host_args(shape))
                recorders[name].append(recorder)
                cached[shape, device] = build.SlotLauncher(recorder, made.partial, made.counter)
            return cached[shape, device]

        monkeypatch.setattr(module, "_launcher", launcher)

    wrap_launcher(cute_wo, "wo_gemv")
    wrap_launcher(cute_mlp, "fused_mlp")
    real_compiled = cute_attn._compiled.__wrapped__
    compiled_cache: dict = {}

    def compiled(shape, device):
        if (shape, device) not in compiled_cache:
            recorder = Recorder(real_compiled(shape, device), cute_attn._host_args(shape))
            recorders["paged_attention"].append(recorder)
            compiled_cache[shape, device] = recorder
        return compiled_cache[shape, device]

    monkeypatch.setattr(cute_attn, "_compiled", compiled)
    return recorders


def check_all(recorders: list[Recorder]) -> int:
    """Check every recorded launch; returns how many there were."""
    for recorder in recorders:
        for args in recorder.calls:
            assert_matches_signature(recorder, args)
    return sum(len(r.calls) for r in recorders)


# --- W_O split-K NVFP4 GEMV -------------------------------------------------------------------------------------


def wo_inputs(k: int, n: int, *, strided: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """x bf16 [K] and an NVFP4 weight [N, K]; `strided` gives non-contiguous views. Nothing launches, so the
    weight bytes are left uninitialized (no pages touched, even at the issue's shape)."""
    x = torch.randn(k, generator=torch.Generator().manual_seed(k + n)).to(torch.bfloat16)
    packed = torch.empty(n, k // 2, dtype=torch.uint8)
    scales = torch.empty(n, k // 16, dtype=torch.uint8).view(torch.float8_e4m3fn)
    if strided:  # same values, every tensor a non-contiguous view the launcher has to copy
        x = torch.stack((x, x), dim=1)[:, 0]
        packed = packed.T.contiguous().T
        scales = torch.cat((scales, scales), dim=1)[:, : k // 16]
    return x, packed, scales, 0.25


@pytest.mark.parametrize(
    ("k", "n", "kv_heads", "wo_split", "strided"),
    [
        (256, 256, 2, 1, False),  # the tiny model's W_O
        (256, 200, 2, 4, True),  # N not a multiple of the 128 threads
        (6144, 5120, 4, 8, False),  # the W_O at the largest split
    ],
)
def test_wo_gemv_launch_tensors_match_the_compiled_signature(no_gpu_launch, k, n, kv_heads, wo_split, strided):
    x, packed, scales, global_scale = wo_inputs(k, n, strided=strided)
    for _ in range(2):  # the second call reuses the cached launcher and its workspace
        y = cute_wo.wo_gemv(x, packed, scales, global_scale, kv_heads, wo_split)
        assert y.shape == (n,) and y.dtype == torch.float32
    (recorder,) = no_gpu_launch["wo_gemv"]
    assert check_all([recorder]) == 2
    shape = cute_wo.wo_gemv_shape(k, n, kv_heads, wo_split)
    x_t, packed_t, scales_t, scale, partial, counter, y_t, _ = recorder.calls[-1]
    assert [tuple(t.shape) for t in (x_t, packed_t, scales_t, partial, counter, y_t)] == [
        (k,), (n, k // 8), (n, k // shape.scale_view_values), (shape.slots, n), (shape.row_blocks,), (n,)
    ]  # fmt: skip
    assert scale.value == global_scale
    if not strided:  # contiguous weights are passed as they are, reinterpreted, not copied
        assert packed_t.iterator._pointer == packed.data_ptr() and scales_t.iterator._pointer == scales.data_ptr()


def test_wo_gemv_words_and_scale_pairs_are_the_bytes_the_kernel_decodes():
    """The int32 / int16 views read NVFP4 bytes little-endian: element 8w+j in nibble j of word w, and the scale of
    block 2c in the low byte of pair c (what `decode_e2m1_times4` and `decode_e4m3_quarter` assume)."""
    t = nvfp4.quantize(torch.randn(4, 64, generator=torch.Generator().manual_seed(1)))
    codes = nvfp4.unpack_codes(t.packed)  # [N, K]
    words = t.packed.contiguous().view(torch.int32)
    pairs = t.scales.contiguous().view(torch.int16)
    raw_scales = t.scales.view(torch.uint8)
    for w in range(words.shape[1]):
        for j in range(8):
            assert torch.equal((words[:, w] >> (4 * j)) & 0xF, codes[:, 8 * w + j].to(torch.int32))
    for c in range(pairs.shape[1]):
        p = pairs[:, c].to(torch.int32)
        assert torch.equal(p & 0xFF, raw_scales[:, 2 * c].to(torch.int32))
        assert torch.equal((p >> 8) & 0xFF, raw_scales[:, 2 * c + 1].to(torch.int32))


# --- fused SwiGLU MLP -------------------------------------------------------------------------------------------


def mlp_inputs(hidden: int, ffn: int, *, strided: bool) -> tuple[torch.Tensor, ...]:
    """bf16 x [H], w_gate and w_up [F, H], w_down [H, F]; the weights uninitialized, as nothing launches."""
    x = torch.randn(hidden, generator=torch.Generator().manual_seed(hidden + ffn)).to(torch.bfloat16)
    w_gate, w_up = (torch.empty(ffn, hidden, dtype=torch.bfloat16) for _ in range(2))
    w_down = torch.empty(hidden, ffn, dtype=torch.bfloat16)
    if strided:
        x = torch.stack((x, x), dim=1)[:, 1]
        w_gate, w_up, w_down = (w.T.contiguous().T for w in (w_gate, w_up, w_down))
    return x, w_gate, w_up, w_down


@pytest.mark.parametrize(
    ("hidden", "ffn", "num_slots", "strided"),
    [
        (256, 768, 6, False),  # the tiny model's MLP (mlp_slots(768) == 6)
        (200, 816, 3, True),  # H and F/num_slots (272) not multiples of the 128 threads
        (5120, 17408, 136, False),  # the MLP
    ],
)
def test_fused_mlp_launch_tensors_match_the_compiled_signature(no_gpu_launch, hidden, ffn, num_slots, strided):
    x, w_gate, w_up, w_down = mlp_inputs(hidden, ffn, strided=strided)
    for _ in range(2):
        y, h = cute_mlp.fused_mlp(x, w_gate, w_up, w_down, num_slots)
        assert (y.shape, y.dtype, h.shape, h.dtype) == ((hidden,), torch.float32, (ffn,), torch.float32)
    (recorder,) = no_gpu_launch["fused_mlp"]
    assert check_all([recorder]) == 2
    *tensors, _ = recorder.calls[-1]
    assert [tuple(t.shape) for t in tensors] == [
        (hidden,), (ffn, hidden), (ffn, hidden), (hidden, ffn), (ffn,), (num_slots, hidden), (1,), (hidden,)
    ]  # fmt: skip


# --- the backend wrappers and the model, through every launcher -------------------------------------------------


def test_cute_backend_wrappers_pass_matching_tensors(no_gpu_launch):
    from engine.kernels.backend import cute_kernels

    kernels = cute_kernels()
    assert kernels.storage_dtype == torch.bfloat16
    gen = torch.Generator().manual_seed(3)
    weight = prepare_wo(torch.randn(256, 256, generator=gen) / 16)
    out = kernels.wo(torch.randn(3, 256, generator=gen), weight, 2, 2)  # fp32 rows, as the model passes them
    assert out.shape == (3, 256)
    _, w_gate, w_up, w_down = mlp_inputs(256, 768, strided=False)
    assert kernels.mlp(torch.randn(3, 256, generator=gen), w_gate, w_up, w_down, 6).shape == (3, 256)
    q = torch.randn(2, 8, 32, generator=gen)  # fp32 q: the wrapper converts it
    pool = torch.randn(10, 16, 2, 32, generator=gen).to(torch.bfloat16)
    table = torch.tensor([[3, 1, 0], [7, 2, 0]], dtype=torch.int32)
    attn = kernels.attention(q, pool, pool.clone(), table, torch.tensor([20, 5], dtype=torch.int32), 0.17, 4)
    assert attn.shape == (2, 8, 32) and attn.dtype == torch.float32
    counts = {name: check_all(recs) for name, recs in no_gpu_launch.items()}
    assert counts == {"wo_gemv": 3, "fused_mlp": 3, "paged_attention": 1}  # one launch per row for the GEMVs


def test_model_decode_passes_matching_tensors_for_every_batch_size(no_gpu_launch):
    """A real decode step of the tiny model with the CuTe set: bf16 pages, int32 tables, per-batch workspaces."""
    from engine.kernels.backend import cute_kernels
    from engine.model import TinyDecoder

    cfg = load_engine_config(ENGINE_CONFIG).model
    model = TinyDecoder(cfg, wo_split=2, device="cpu", kernels=cute_kernels())
    assert model.pages.k.dtype == model.pages.v.dtype == torch.bfloat16
    caches = [model.new_cache(40) for _ in range(3)]
    for i, cache in enumerate(caches):
        model.prefill([65 + i] * (5 + 17 * i), cache)  # 5, 22 and 39 tokens: 1 to 3 pages
    model.decode([66, 67, 68], caches)
    model.decode([69], caches[:1])  # another batch size: its own workspace
    counts = {name: check_all(recs) for name, recs in no_gpu_launch.items()}
    assert counts == {"wo_gemv": 4 * cfg.layers, "fused_mlp": 4 * cfg.layers, "paged_attention": 2 * cfg.layers}
    (attention,) = no_gpu_launch["paged_attention"]
    for args in attention.calls:  # grid z is q's batch; every workspace the kernel indexes by b must be that big
        q, k_pages, v_pages, table, seq_lens, _, partial, lse, counter, out, _ = args
        batch = q.shape[0]
        assert [t.shape[0] for t in (table, seq_lens, partial, lse, counter, out)] == [batch] * 6
        assert k_pages.shape == v_pages.shape and k_pages.shape[1:] == (16, cfg.kv_heads, cfg.head_dim)
    assert {args[0].shape[0] for args in attention.calls} == {3, 1}


# --- the W_O kernel at the engine's own shapes --------------------------------------------------------------------


@pytest.mark.parametrize("wo_split", VALID_WO_SPLITS)
def test_cute_wo_gemv_accepts_the_tiny_engine_shape_at_every_valid_split(wo_split):
    cfg = load_engine_config(ENGINE_CONFIG).model
    shape = cute_wo.wo_gemv_shape(cfg.heads * cfg.head_dim, cfg.hidden, cfg.kv_heads, wo_split)
    assert shape.slots == cfg.kv_heads * wo_split
