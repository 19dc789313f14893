"""DAPO dynamic sampling as pure bookkeeping: drop groups that teach nothing, refill, then fall back.

A group whose members all got the same accuracy has zero advantage everywhere, so it only dilutes the
token-mean. DAPO drops such groups and samples fresh prompts until the batch is full; TAPO fills the
remainder with unfiltered groups after ``max_num_gen_batches`` rounds instead of raising. Constancy is
tested with a tolerance on the spread, never ``std == 0`` (float noise would keep dead groups).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

import torch

G = TypeVar("G")


def constant_groups(values: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
    """A bool per group (row of ``[groups, group_size]``): True when max - min <= ``tol``.

    The spread is a tolerance-friendly test: a group with std 1e-9 is constant, a group with one
    member apart by more than ``tol`` is not.
    """
    if values.dim() != 2:
        raise ValueError(f"values must be shaped [groups, group_size], got {tuple(values.shape)}")
    values = values.to(torch.float64)
    return (values.amax(dim=1) - values.amin(dim=1)) <= tol


@dataclass(frozen=True)
class SamplingState(Generic[G]):
    """What has been gathered for one training batch across generation rounds."""

    kept: tuple[G, ...] = ()
    reserve: tuple[G, ...] = field(default=(), repr=False)
    rounds: int = 0
    seen: int = 0
    filtered: int = 0


def add_round(state: SamplingState[G], groups: Sequence[G], constant: Sequence[bool], target: int) -> SamplingState[G]:
    """Fold one generation round in: informative groups are kept (up to ``target``), constant ones reserved."""
    if len(groups) != len(constant):
        raise ValueError(f"{len(groups)} groups but {len(constant)} constancy flags")
    informative = [g for g, c in zip(groups, constant, strict=True) if not c]
    dropped = [g for g, c in zip(groups, constant, strict=True) if c]
    room = max(0, target - len(state.kept))
    return replace(
        state,
        kept=state.kept + tuple(informative[:room]),
        reserve=state.reserve + tuple(dropped),
        rounds=state.rounds + 1,
        seen=state.seen + len(groups),
        filtered=state.filtered + len(dropped),
    )


def batch_full(state: SamplingState[G], target: int) -> bool:
    return len(state.kept) >= target


def finish(state: SamplingState[G], target: int) -> tuple[list[G], int]:
    """The batch to train on and how many constant groups had to fill it (TAPO's fallback)."""
    kept = list(state.kept[:target])
    filled = list(state.reserve[: max(0, target - len(kept))])
    return kept + filled, len(filled)
