"""glibc malloc's mmap threshold, fixed, so that freed tensors go back to the system.

On CPU, torch allocates every tensor with the C library's ``malloc``. glibc serves a request from its heaps unless
it is at least the *mmap threshold*, and that threshold is dynamic: each time a block served by ``mmap`` is freed,
the threshold rises to its size (up to 32 MiB). After the first large tensor is freed, a sampling or training
process therefore serves tensors of 1 to 32 MiB (KV caches, activations, prefix-store entries) from heaps, where
blocks of ever-changing sizes leave holes that are never returned: with each batch's KV reserved once, a
warm-start evaluation of the default profile still grew to 9.7 GiB after 98 of its 300 questions, and with the
threshold fixed it peaked at 3.1 GiB over all 300 (docs/rollout.md). Fixing the threshold
(``mallopt(M_MMAP_THRESHOLD)``, which also turns the dynamic adjustment off) gives every allocation of 1 MiB or
more its own mapping, unmapped when it is freed; what that costs is a fresh mapping per large tensor, which the
engine keeps rare by reserving each batch's KV once (:mod:`tapo.engines.batch_kv`).

``MALLOC_MMAP_THRESHOLD_`` in the environment (glibc's own tunable) wins: then nothing is changed here. On a C
library other than glibc (musl, macOS) there is no ``mallopt`` and nothing is done.
"""

from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLD_BYTES = 1024**2
"""Allocations of at least this many bytes get a mapping of their own (glibc's default starts at 128 KiB and
climbs to 32 MiB)."""

_M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
_ENV = "MALLOC_MMAP_THRESHOLD_"


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix this process's mmap threshold at ``threshold`` bytes, unless the environment sets glibc's own; whether it
    was set here."""
    if _ENV in os.environ:
        return False
    libc = ctypes.CDLL(None)  # the process's own symbols, the C library's among them (find_library spawns ldconfig)
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):  # not glibc
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))
