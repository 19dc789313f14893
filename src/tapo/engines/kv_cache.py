"""A prefix-keyed store of per-sequence KV caches, so a multi-turn trajectory prefills only its new tokens.

The engine interface stays token in, token out: a turn's request is the whole context (prompt, earlier turns,
tool outputs) as ids. Like vLLM's prefix caching, the engine looks up the longest stored sequence that is a
prefix of those ids and computes attention only for the rest. Each stored entry is one sequence's keys and
values, compacted (no padding) and owned by the store.

Memory is bounded three ways: an entry is dropped once a longer sequence extending it has been stored (the
trajectory's next turn supersedes it), ``release(ids)`` drops what a finished trajectory left, and the bytes of
the cached keys and values never exceed ``max_bytes`` (least recently used entries go first; their trajectories
fall back to a full prefill). The bound is in bytes, not positions, because a position costs layers x 2 x KV heads
x head size x dtype bytes: 46 KB for SmolLM2-135M in float32, 36 KB for Qwen2.5-3B in bf16; a positions cap meant
a different memory per model and dtype. ``clear`` drops everything when the weights change.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch

# One sequence's cache: per layer (keys, values), each [heads, length, head_dim].
LayerKV = tuple[torch.Tensor, torch.Tensor]


@dataclass
class KVStats:
    """Counters since the engine was built; benchmarks read ``prefill_per_sampled``."""

    prefilled: int = 0  # positions computed in prefill passes (real tokens, not padding)
    reused: int = 0  # positions taken from the store instead of being prefilled
    sampled: int = 0  # tokens sampled and returned
    evicted: int = 0  # entries dropped by the byte cap
    evicted_positions: int = 0  # their positions (each a full prefill again at its trajectory's next turn)
    evicted_bytes: int = 0  # their keys' and values' bytes

    @property
    def prefill_per_sampled(self) -> float:
        """Positions prefilled per sampled token (a full re-prefill every turn makes this grow with the turns)."""
        return self.prefilled / max(1, self.sampled)

    def metrics(self, since: KVStats | None = None) -> dict[str, float]:
        """The counters as ``kv/*`` metrics, counted since ``since`` (a :meth:`snapshot`) or since the start."""
        base = since or KVStats()
        return {f"kv/{f.name}": float(getattr(self, f.name) - getattr(base, f.name)) for f in fields(self)}

    def snapshot(self) -> KVStats:
        """A copy of the counters now, to count the next ones from."""
        return replace(self)


AUTO_SHARE = 8
"""``kv_cache_gib: auto`` keeps at most 1/8 of the memory available when the engine starts ..."""
AUTO_MAX_BYTES = 1024**3
"""... and at most 1 GiB (23 K positions of SmolLM2-135M in float32, 46 K in bf16)."""


def store_bytes(setting: float | str, available: int) -> int:
    """The store's cap in bytes: ``setting`` GiB, or ``"auto"``: ``available`` / :data:`AUTO_SHARE`, at most
    :data:`AUTO_MAX_BYTES`."""
    if setting == "auto":
        return min(available // AUTO_SHARE, AUTO_MAX_BYTES)
    return int(float(setting) * 1024**3)


def position_bytes(layers: int, kv_heads: int, head_dim: int, dtype_bytes: int) -> int:
    """Bytes one cached position takes: keys and values of every layer."""
    return layers * 2 * kv_heads * head_dim * dtype_bytes


def entry_bytes(kv: Sequence[LayerKV]) -> int:
    """Bytes of one stored sequence's keys and values."""
    return sum(t.numel() * t.element_size() for layer in kv for t in layer)


class PrefixKVStore:
    """Entries keyed by their token ids; thread-safe (the rollout releases from its loop while a batch runs)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], list[LayerKV]] = OrderedDict()  # oldest use first
        self._sizes: dict[tuple[int, ...], int] = {}  # bytes of each entry
        self._tokens = 0
        self._bytes = 0
        self._lock = threading.Lock()
        self.stats = KVStats()

    @property
    def tokens(self) -> int:
        """Cached positions held now, over all entries."""
        return self._tokens

    @property
    def bytes(self) -> int:
        """Bytes of the cached keys and values held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, ids: Sequence[int]) -> tuple[int, list[LayerKV] | None]:
        """The longest stored prefix of ``ids`` that leaves at least one token to compute (the next token's
        logits need a forward pass), as (length, per-layer KV); (0, None) on a miss."""
        ids = tuple(ids)
        best: tuple[int, ...] | None = None
        with self._lock:
            for key in self._entries:
                n = len(key)
                if n < len(ids) and (best is None or n > len(best)) and key[-1] == ids[n - 1] and ids[:n] == key:
                    best = key
            if best is None:
                return 0, None
            self._entries.move_to_end(best)
            return len(best), self._entries[best]

    def store(self, ids: Sequence[int], kv: list[LayerKV], superseded: Sequence[tuple[int, ...]] = ()) -> None:
        """Keep ``kv`` (covering exactly ``ids``) and drop the ``superseded`` entries it extends; evict the least
        recently used entries while over the cap. An entry larger than the whole cap is not kept."""
        key = tuple(ids)
        size = entry_bytes(kv)
        with self._lock:
            for old in superseded:
                self._drop(old)
            if not key or size > self.max_bytes:
                return
            self._drop(key)
            while self._bytes + size > self.max_bytes and self._entries:
                oldest = next(iter(self._entries))
                self.stats.evicted += 1
                self.stats.evicted_positions += len(oldest)
                self.stats.evicted_bytes += self._sizes[oldest]
                self._drop(oldest)
            self._entries[key] = kv
            self._sizes[key] = size
            self._tokens += len(key)
            self._bytes += size

    def release(self, ids: Sequence[int]) -> None:
        """Drop every entry that is a prefix of ``ids`` (the finished trajectory's context)."""
        ids = tuple(ids)
        with self._lock:
            for key in [k for k in self._entries if len(k) <= len(ids) and ids[: len(k)] == k]:
                self._drop(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._sizes.clear()
            self._tokens = 0
            self._bytes = 0

    def _drop(self, key: tuple[int, ...]) -> None:
        if self._entries.pop(key, None) is not None:
            self._tokens -= len(key)
            self._bytes -= self._sizes.pop(key)
