"""A tiny decoder-only transformer (RMSNorm, RoPE, grouped-query attention, SwiGLU) with a KV cache.

Weights are random but seeded, so the same config gives the same tokens. The attention output
projection runs through the split-K W_O kernel, so `wo_split` changes real computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.config import ModelConfig
from engine.kernels.checks import KernelCheckResult, WoGemv, check_wo_gemv
from engine.kernels.wo_split import check_wo_split, wo_split_gemv
from engine.tokenizer import BOS, EOS, VOCAB_SIZE


@dataclass
class KVCache:
    """Keys and values of one sequence: [layers, kv_heads, capacity, head_dim] each."""

    k: torch.Tensor
    v: torch.Tensor
    length: int = 0

    @property
    def capacity(self) -> int:
        """Most tokens this cache can hold."""
        return self.k.shape[2]


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
        self, cfg: ModelConfig, wo_split: int = 1, device: str | torch.device = "cpu", wo_kernel: WoGemv = wo_split_gemv
    ) -> None:
        self.cfg = cfg
        self.wo_split = check_wo_split(wo_split)
        self.wo_kernel = wo_kernel
        self.device = torch.device(device)
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
                    "wo": weight(cfg.heads * hd, h),
                    "mlp_norm": torch.ones(h, device=self.device),
                    "w_gate": weight(h, ffn),
                    "w_up": weight(h, ffn),
                    "w_down": weight(ffn, h),
                }
            )
        self.final_norm = torch.ones(h, device=self.device)
        self.lm_head = weight(h, VOCAB_SIZE)
        self.prior = output_prior().to(self.device)
        inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        angles = torch.outer(torch.arange(cfg.max_model_len, dtype=torch.float32), inv_freq)
        self.rope_cos = angles.cos().to(self.device)
        self.rope_sin = angles.sin().to(self.device)

    def kernel_checks(self) -> list[KernelCheckResult]:
        """Check the W_O kernel this model runs, at the model's own shape and split (engine/kernels/checks.py)."""
        cfg = self.cfg
        return check_wo_gemv(self.wo_kernel, self.wo_split, cfg.kv_heads, cfg.heads * cfg.head_dim, cfg.hidden,
                               self.device, seed=cfg.seed)  # fmt: skip

    def new_cache(self, capacity: int) -> KVCache:
        """An empty KV cache for a sequence of at most `capacity` tokens."""
        cfg = self.cfg
        capacity = min(capacity, cfg.max_model_len)
        shape = (cfg.layers, cfg.kv_heads, capacity, cfg.head_dim)
        return KVCache(torch.empty(shape, device=self.device), torch.empty(shape, device=self.device))

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
        for li, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, x, positions)
            cache.k[li, :, start : start + t] = k.transpose(0, 1)
            cache.v[li, :, start : start + t] = v.transpose(0, 1)
            keys = cache.k[li, :, : start + t].unsqueeze(0)
            values = cache.v[li, :, : start + t].unsqueeze(0)
            mask = self._causal_mask(start, t)
            attn = F.scaled_dot_product_attention(
                q.transpose(0, 1).unsqueeze(0), keys, values, attn_mask=mask, enable_gqa=True
            )
            x = self._after_attention(layer, x, attn[0].transpose(0, 1).reshape(t, cfg.heads * cfg.head_dim))
        cache.length = start + t
        return self._logits(x)

    @torch.inference_mode()
    def decode(self, tokens: list[int], caches: list[KVCache]) -> torch.Tensor:
        """One decode step for a batch: token i is appended to caches[i]; returns logits [B, vocab]."""
        cfg = self.cfg
        b = len(tokens)
        positions = torch.tensor([c.length for c in caches], device=self.device)
        x = self.embed[torch.tensor(tokens, device=self.device)]
        attn_out = torch.empty(b, cfg.heads * cfg.head_dim, device=self.device)
        for li, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, x, positions)
            for i, cache in enumerate(caches):
                pos = cache.length
                cache.k[li, :, pos] = k[i]
                cache.v[li, :, pos] = v[i]
                out = F.scaled_dot_product_attention(
                    q[i].unsqueeze(0).unsqueeze(2),
                    cache.k[li, :, : pos + 1].unsqueeze(0),
                    cache.v[li, :, : pos + 1].unsqueeze(0),
                    enable_gqa=True,
                )
                attn_out[i] = out.reshape(-1)
            x = self._after_attention(layer, x, attn_out)
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

    def _after_attention(self, layer: dict, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        x = x + self.wo_kernel(attn, layer["wo"], self.cfg.kv_heads, self.wo_split)
        h = _rms_norm(x, layer["mlp_norm"])
        return x + (F.silu(h @ layer["w_gate"]) * (h @ layer["w_up"])) @ layer["w_down"]

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
