"""Bounded oneDNN caches, so that a CPU process's memory does not grow with every new tensor shape.

On a CPU with native bf16 (AVX512-BF16, AMX), torch runs bf16 matmuls through oneDNN, which builds a *primitive*
(JIT-compiled kernel plus its buffers) for each new combination of shapes and keeps it: oneDNN's primitive cache and
ideep's own cache hold up to 1024 entries each. Sampling and training see a new shape at nearly every batch
(rows x positions vary with the lengths), so each stage of the main job grew for its whole run: the long profile's RL
stage from 3.04 GiB after its first step to 5.09 GiB by its last, against 3.47 GiB in float32, which does not
take this path. Issue pytorch/pytorch#98688 gives the two settings; capped at 64 entries, 150 bf16 matmuls of
random row counts (forward and backward) leave 99 MiB resident instead of 380 MiB (tests/unit/test_onednn.py), and
repeated shapes (a forward's layers, a batch's decode steps) still hit the cache.

Both are environment settings that oneDNN and ideep read when they build their first primitive, so they take
effect when set before the first bf16 matmul, as every tapo command does. The environment wins: a user who sets
either keeps their value.
"""

from __future__ import annotations

import os

CACHE_CAPACITY = 64
"""Entries each cache keeps (oneDNN's default: 1024)."""

CACHE_SETTINGS = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")
"""oneDNN's primitive cache, and ideep's cache of primitives built for torch's ops."""


def bound_onednn_caches(capacity: int = CACHE_CAPACITY) -> None:
    """Cap both caches at ``capacity`` entries, where the environment does not set them already."""
    for name in CACHE_SETTINGS:
        os.environ.setdefault(name, str(capacity))
