"""A paged KV cache: one pool of fixed-size pages per model, a block table per sequence (as vLLM lays it out).

The pool holds K and V as [layers, pages, page_size, kv_heads, head_dim]. A sequence's cache owns a list of
page ids; token t lives in page `pages[t // page_size]` at offset `t % page_size`. Pages return to the pool
when the sequence's cache is released or garbage-collected, and the pool grows (doubling) when it runs out.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import torch

PAGE_SIZE = 16


class PagePool:
    """K and V pages shared by every sequence of one model; allocation and release are thread-safe."""

    def __init__(
        self,
        layers: int,
        kv_heads: int,
        head_dim: int,
        device: torch.device,
        dtype: torch.dtype,
        page_size: int = PAGE_SIZE,
        initial_pages: int = 64,
    ) -> None:
        self.page_size = page_size
        self._shape = (layers, initial_pages, page_size, kv_heads, head_dim)
        self.k = torch.zeros(self._shape, device=device, dtype=dtype)
        self.v = torch.zeros(self._shape, device=device, dtype=dtype)
        self._free = list(range(initial_pages - 1, -1, -1))  # pop() hands out low ids first
        self._lock = threading.Lock()

    @property
    def total_pages(self) -> int:
        """Pages in the pool, free or not."""
        return self.k.shape[1]

    @property
    def free_pages(self) -> int:
        """Pages not owned by any sequence."""
        return len(self._free)

    def allocate(self, count: int) -> list[int]:
        """Take `count` pages, growing the pool when it has too few free."""
        with self._lock:
            while len(self._free) < count:
                self._grow()
            return [self._free.pop() for _ in range(count)]

    def release(self, pages: list[int]) -> None:
        """Give pages back to the pool."""
        with self._lock:
            self._free.extend(reversed(pages))

    def _grow(self) -> None:
        old = self.total_pages
        extra = (self.k.shape[0], old, *self.k.shape[2:])
        self.k = torch.cat((self.k, self.k.new_zeros(extra)), dim=1)
        self.v = torch.cat((self.v, self.v.new_zeros(extra)), dim=1)
        self._free = list(range(2 * old - 1, old - 1, -1)) + self._free


@dataclass
class KVCache:
    """One sequence's pages in a PagePool, its block table on the pool's device, and how many tokens it holds."""

    pool: PagePool
    pages: list[int]
    block_table: torch.Tensor  # int32 [len(pages)]
    length: int = 0

    @property
    def capacity(self) -> int:
        """Most tokens this cache can hold."""
        return len(self.pages) * self.pool.page_size

    def slots(self, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(page ids, offsets) of tokens start..start+count-1, for indexing pool.k[layer]."""
        positions = torch.arange(start, start + count, device=self.block_table.device)
        return self.block_table[positions // self.pool.page_size].long(), positions % self.pool.page_size


def new_cache(pool: PagePool, capacity: int) -> KVCache:
    """A cache of ceil(capacity / page_size) pages; they go back to the pool when the cache is collected."""
    pages = pool.allocate(max(1, -(-capacity // pool.page_size)))
    table = torch.tensor(pages, dtype=torch.int32, device=pool.k.device)
    cache = KVCache(pool, pages, table)
    weakref.finalize(cache, pool.release, list(pages))
    return cache


def batch_tables(caches: list[KVCache]) -> tuple[torch.Tensor, torch.Tensor]:
    """Block tables padded to one [B, max_pages] int32 tensor, and seq_lens [B] int32 (each cache's length)."""
    device = caches[0].block_table.device
    width = max(len(c.pages) for c in caches)
    table = torch.zeros(len(caches), width, dtype=torch.int32, device=device)
    for i, c in enumerate(caches):
        table[i, : len(c.pages)] = c.block_table
    lens = torch.tensor([c.length for c in caches], dtype=torch.int32, device=device)
    return table, lens
