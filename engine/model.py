"""A tiny decoder-only transformer (RMSNorm, RoPE, grouped-query attention, SwiGLU) with a paged KV cache.

Weights are random but seeded, so the same config gives the same tokens. Decode runs the kernels under
test (engine/kernels/backend.py): the split-K W_O GEMV on NVFP4 weights, so `wo_split` changes real
computation; paged split-KV decode attention; and the fused SwiGLU MLP — the CuTe DSL kernels on CUDA,
the torch references elsewhere. Prefill gathers a sequence's pages and uses torch attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.config import ModelConfig
from engine.kernels.backend import TORCH_KERNELS, DecodeKernels, ModelShapes
from engine.kernels.checks import KernelCheckResult
from engine.kernels.decode_checks import check_decode_kernels
from engine.kernels.wo_nvfp4 import prepare_wo
from engine.kernels.wo_split_values import check_wo_split
from engine.kv_pages import PAGE_SIZE, KVCache, PagePool, batch_tables, new_cache
from engine.tokenizer import BOS, EOS, VOCAB_SIZE

KV_SPLITS = 4  # split-KV partitions per sequence in decode attention
MLP_SLOT_WIDTH = 128  # FFN rows per fused-MLP CTA when the FFN size allows it


def mlp_slots(ffn: int) -> int:
    """Fused-MLP slots for an FFN size: ffn / 128 when 128 divides it, else one slot."""
    return ffn // MLP_SLOT_WIDTH if ffn % MLP_SLOT_WIDTH == 0 else 1


def output_prior() -> torch.Tensor:
    """Logit bias that keeps random-weight output printable: letters and space first, never BOS.

    The model is a kernel testbed, not a language model; the prior only makes its text readable
    in the console. EOS keeps a small chance so requests without `ignore_eos` can end early.
    """
    prior = torch.full((VOCAB_SIZE,), -4.0)
    prior[32:127] = 3.0
    for ch in b"etaoinshrdlu ":
        prior[ch] = 5.0
    prior[ord("\n")] = 2.0
    prior[EOS] = 0.0
    prior[BOS] = float("-inf")
    return prior


class TinyDecoder:
    """The model: seeded weights, prefill of one prompt, batched single-token decode."""

    def __init__(
        self,
        cfg: ModelConfig,
        wo_split: int = 1,
        device: str | torch.device = "cpu",
        kernels: DecodeKernels = TORCH_KERNELS,
    ) -> None:
        self.cfg = cfg
        self.wo_split = check_wo_split(wo_split)
        self.kernels = kernels
        self.device = torch.device(device)
        self.mlp_slots = mlp_slots(cfg.ffn)
        self.shapes = ModelShapes(cfg.hidden, cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.ffn, self.wo_split,
                                  self.mlp_slots, KV_SPLITS, PAGE_SIZE)  # fmt: skip
        kernels.check_shapes(self.shapes)
        self._prefill = kernels if kernels.name == "torch" else TORCH_KERNELS  # CuTe kernels are batch-1 GEMVs
        store = kernels.storage_dtype
        gen = torch.Generator().manual_seed(cfg.seed)
        h, hd, ffn = cfg.hidden, cfg.head_dim, cfg.ffn

        def weight(rows: int, cols: int) -> torch.Tensor:
            return (torch.randn(rows, cols, generator=gen) / rows**0.5).to(self.device)

        self.embed = (torch.randn(VOCAB_SIZE, h, generator=gen)).to(self.device)
        self.layers = []
        for _ in range(cfg.layers):
            self.layers.append(
                {
                    "attn_norm": torch.ones(h, device=self.device),
                    "wq": weight(h, cfg.heads * hd),
                    "wk": weight(h, cfg.kv_heads * hd),
                    "wv": weight(h, cfg.kv_heads * hd),
                    "wo": prepare_wo(weight(cfg.heads * hd, h), self.device),
                    "mlp_norm": torch.ones(h, device=self.device),
                    "w_gate": weight(h, ffn).T.contiguous().to(store),  # [F, H], as nn.Linear stores it
                    "w_up": weight(h, ffn).T.contiguous().to(store),
                    "w_down": weight(ffn, h).T.contiguous().to(store),  # [H, F]
                }
            )
        self.final_norm = torch.ones(h, device=self.device)
        self.lm_head = weight(h, VOCAB_SIZE)
        self.prior = output_prior().to(self.device)
        inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        angles = torch.outer(torch.arange(cfg.max_model_len, dtype=torch.float32), inv_freq)
        self.rope_cos = angles.cos().to(self.device)
        self.rope_sin = angles.sin().to(self.device)
        self.pages = PagePool(cfg.layers, cfg.kv_heads, hd, self.device, store)

    def kernel_checks(self) -> list[KernelCheckResult]:
        """Check the W_O, attention and MLP kernels this model runs, at its own shapes (kernels/decode_checks.py)."""
        return check_decode_kernels(self.kernels, self.shapes, self.device, seed=self.cfg.seed)

    def new_cache(self, capacity: int) -> KVCache:
        """An empty paged KV cache for a sequence of at most `capacity` tokens (pages return when it is dropped)."""
        return new_cache(self.pages, min(capacity, self.cfg.max_model_len))

    @torch.inference_mode()
    def prefill(self, tokens: list[int], cache: KVCache) -> torch.Tensor:
        """Run the prompt through the model, filling `cache`; returns logits [vocab] of the last position."""
        return self.forward(tokens, cache)[-1]

    @torch.inference_mode()
    def forward(self, tokens: list[int], cache: KVCache) -> torch.Tensor:
        """Causal forward pass over `tokens` appended to `cache`; returns logits [T, vocab]."""
        cfg = self.cfg
        start, t = cache.length, len(tokens)
        if start + t > cache.capacity:
            raise ValueError(f"sequence of {start + t} tokens exceeds the cache capacity {cache.capacity}")
        positions = torch.arange(start, start + t, device=self.device)
        x = self.embed[torch.tensor(tokens, device=self.device)]
        page, offset = cache.slots(start, t)
        used = cache.block_table[: -(-(start + t) // self.pages.page_size)].long()
        for li, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, x, positions)
            self.pages.k[li, page, offset] = k.to(self.pages.k.dtype)
            self.pages.v[li, page, offset] = v.to(self.pages.v.dtype)
            keys, values = (self._gathered(p[li], used, start + t) for p in (self.pages.k, self.pages.v))
            mask = self._causal_mask(start, t)
            attn = F.scaled_dot_product_attention(
                q.transpose(0, 1).unsqueeze(0), keys, values, attn_mask=mask, enable_gqa=True
            )
            attn = attn[0].transpose(0, 1).reshape(t, cfg.heads * cfg.head_dim)
            x = self._after_attention(layer, x, attn, self._prefill)
        cache.length = start + t
        return self._logits(x)

    @torch.inference_mode()
    def decode(self, tokens: list[int], caches: list[KVCache]) -> torch.Tensor:
        """One decode step for a batch: token i is appended to caches[i]; returns logits [B, vocab]."""
        cfg = self.cfg
        for cache in caches:
            if cache.length >= cache.capacity:
                raise ValueError(f"sequence of {cache.length + 1} tokens exceeds the cache capacity {cache.capacity}")
        positions = torch.tensor([c.length for c in caches], device=self.device)
        x = self.embed[torch.tensor(tokens, device=self.device)]
        table, lens = batch_tables(caches)
        slots = [c.slots(c.length, 1) for c in caches]
        page, offset = torch.cat([s[0] for s in slots]), torch.cat([s[1] for s in slots])
        scale = cfg.head_dim**-0.5
        for li, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, x, positions)
            self.pages.k[li, page, offset] = k.to(self.pages.k.dtype)
            self.pages.v[li, page, offset] = v.to(self.pages.v.dtype)
            attn = self.kernels.attention(q, self.pages.k[li], self.pages.v[li], table, lens + 1, scale, KV_SPLITS)
            x = self._after_attention(layer, x, attn.float().reshape(len(caches), cfg.heads * cfg.head_dim))
        for cache in caches:
            cache.length += 1
        return self._logits(x)

    def _qkv(self, layer: dict, x: torch.Tensor, positions: torch.Tensor):
        cfg = self.cfg
        h = _rms_norm(x, layer["attn_norm"])
        q = (h @ layer["wq"]).view(-1, cfg.heads, cfg.head_dim)
        k = (h @ layer["wk"]).view(-1, cfg.kv_heads, cfg.head_dim)
        v = (h @ layer["wv"]).view(-1, cfg.kv_heads, cfg.head_dim)
        cos, sin = self.rope_cos[positions].unsqueeze(1), self.rope_sin[positions].unsqueeze(1)
        return _rotate(q, cos, sin), _rotate(k, cos, sin), v

    def _gathered(self, pool: torch.Tensor, pages: torch.Tensor, length: int) -> torch.Tensor:
        """One layer's K or V of a sequence, contiguous: [1, kv_heads, length, head_dim] in float32."""
        flat = pool[pages].reshape(-1, self.cfg.kv_heads, self.cfg.head_dim)[:length]
        return flat.transpose(0, 1).unsqueeze(0).float()

    def _after_attention(
        self, layer: dict, x: torch.Tensor, attn: torch.Tensor, kernels: DecodeKernels | None = None
    ) -> torch.Tensor:
        """W_O and the MLP with `kernels` (the model's own unless given; prefill passes the torch set)."""
        kernels = kernels or self.kernels
        x = x + kernels.wo(attn, layer["wo"], self.cfg.kv_heads, self.wo_split).float()
        h = _rms_norm(x, layer["mlp_norm"])
        mlp_weights = (layer[name].to(kernels.storage_dtype) for name in ("w_gate", "w_up", "w_down"))
        return x + kernels.mlp(h, *mlp_weights, self.mlp_slots).float()

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return _rms_norm(x, self.final_norm) @ self.lm_head + self.prior

    def _causal_mask(self, start: int, t: int) -> torch.Tensor:
        rows = torch.arange(start, start + t, device=self.device).unsqueeze(1)
        cols = torch.arange(start + t, device=self.device).unsqueeze(0)
        return cols <= rows


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out
