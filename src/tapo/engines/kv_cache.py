"""A prefix-keyed store of per-sequence KV caches, so a multi-turn trajectory prefills only its new tokens.

The engine interface stays token in, token out: a turn's request is the whole context (prompt, earlier turns,
tool outputs) as ids. Like vLLM's prefix caching, the engine looks up the longest stored sequence that is a
prefix of those ids and computes attention only for the rest. Each stored entry is one sequence's keys and
values, compacted (no padding) and owned by the store.

Memory is bounded three ways: an entry is dropped once a longer sequence extending it has been stored (the
trajectory's next turn supersedes it), ``release(ids)`` drops what a finished trajectory left, and the total
cached positions never exceed ``max_tokens`` (least recently used entries go first; their trajectories fall
back to a full prefill). ``clear`` drops everything when the weights change.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

# One sequence's cache: per layer (keys, values), each [heads, length, head_dim].
LayerKV = tuple[torch.Tensor, torch.Tensor]


@dataclass
class KVStats:
    """Counters since the engine was built; benchmarks read ``prefill_per_sampled``."""

    prefilled: int = 0  # positions computed in prefill passes (real tokens, not padding)
    reused: int = 0  # positions taken from the store instead of being prefilled
    sampled: int = 0  # tokens sampled and returned
    evicted: int = 0  # entries dropped by the token cap

    @property
    def prefill_per_sampled(self) -> float:
        """Positions prefilled per sampled token (a full re-prefill every turn makes this grow with the turns)."""
        return self.prefilled / max(1, self.sampled)


class PrefixKVStore:
    """Entries keyed by their token ids; thread-safe (the rollout releases from its loop while a batch runs)."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._entries: OrderedDict[tuple[int, ...], list[LayerKV]] = OrderedDict()  # oldest use first
        self._tokens = 0
        self._lock = threading.Lock()
        self.stats = KVStats()

    @property
    def tokens(self) -> int:
        """Cached positions held now, over all entries."""
        return self._tokens

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
        with self._lock:
            for old in superseded:
                self._drop(old)
            if not key or len(key) > self.max_tokens:
                return
            self._drop(key)
            while self._tokens + len(key) > self.max_tokens and self._entries:
                self._drop(next(iter(self._entries)))
                self.stats.evicted += 1
            self._entries[key] = kv
            self._tokens += len(key)

    def release(self, ids: Sequence[int]) -> None:
        """Drop every entry that is a prefix of ``ids`` (the finished trajectory's context)."""
        ids = tuple(ids)
        with self._lock:
            for key in [k for k in self._entries if len(k) <= len(ids) and ids[: len(k)] == k]:
                self._drop(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._tokens = 0

    def _drop(self, key: tuple[int, ...]) -> None:
        if self._entries.pop(key, None) is not None:
            self._tokens -= len(key)
