"""What the ``if_native`` precision settings mean on this machine: bf16 where the hardware computes it, not where
it would be emulated.

A CPU without bf16 instructions runs bf16 matmuls by converting to float32 and back, slower than float32 itself
(the chunked log-prob pass under bf16 autocast was slower on such a CPU, docs/training.md), while one with
AVX512-BF16 or AMX ran forward + backward 2.5x faster. ``trainer.bf16: if_native`` and
``rollout.engine.dtype: bfloat16_if_native`` pick bf16 only in the first case: on a GPU that supports it, or on a
CPU whose flags (``/proc/cpuinfo``) list a bf16 instruction set. The setting stays unresolved in the config (a run
moved to another machine decides again there); the code that acts on it asks here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
"""CPU flags of bf16 arithmetic: x86's AVX512-BF16 and AMX-BF16 (``flags``), Arm's BF16 extension (``Features``)."""

CPUINFO = Path("/proc/cpuinfo")

IfNative = Literal["if_native"]


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The instruction-set flags of the first CPU listed in ``cpuinfo`` (empty where the file is not there: not
    Linux, which then never counts as native)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16(flags: Iterable[str] | None = None, gpu: bool | None = None) -> bool:
    """Whether bf16 arithmetic is native here: a CUDA GPU that supports it, else a CPU with one of
    :data:`NATIVE_BF16_FLAGS` (``flags`` defaults to this CPU's; ``gpu`` to whether CUDA is available)."""
    import torch

    if gpu is None:
        gpu = torch.cuda.is_available()
    if gpu:
        return bool(torch.cuda.is_bf16_supported())
    return bool(NATIVE_BF16_FLAGS & frozenset(cpu_flags() if flags is None else flags))


def autocast_bf16(setting: bool | IfNative) -> bool:
    """``trainer.bf16`` resolved: true and false as written, ``if_native`` by :func:`native_bf16`."""
    return native_bf16() if setting == "if_native" else bool(setting)


def engine_dtype(setting: str, emulated: str = "auto") -> str:
    """``rollout.engine.dtype`` resolved: ``bfloat16_if_native`` is ``bfloat16`` where :func:`native_bf16`, else
    ``emulated``; other values as written. The transformers engine falls back to ``auto`` (the model's own dtype,
    no copy); vLLM to ``float32``, as its ``auto`` would sample an fp32 checkpoint in emulated bf16."""
    if setting == "bfloat16_if_native":
        return "bfloat16" if native_bf16() else emulated
    return setting
