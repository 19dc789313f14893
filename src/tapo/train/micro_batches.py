"""Micro-batches of the update (and of the warm start) cut by length, and how much of them is padding.

``pad_batch`` left-pads every prompt to the micro-batch's longest and right-pads every response to its longest, so
one long trajectory makes every row of its micro-batch as wide; the padded positions run through every layer and
carry no loss. Sorting a process's share of a mini-batch by length before cutting it puts similar lengths together.
The mini-batch's loss is a token-mean over all of it (the denominator is the mini-batch's loss tokens, whatever the
micro-batches), so the gradient accumulated over its micro-batches is the same sum in another order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")


class Sequenced(Protocol):
    """A sequence as the forward pass lays it out: a trajectory of RL, a demonstration of the warm start."""

    prompt_ids: list[int]
    response_ids: list[int]


def sequence_length(item: Sequenced) -> int:
    """Positions a trajectory or demonstration fills in a forward pass: its prompt and its response."""
    return len(item.prompt_ids) + len(item.response_ids)


def cut(items: Sequence[T], size: int, lengths: Sequence[int] | None = None) -> list[list[T]]:
    """Consecutive micro-batches of ``size`` items; with ``lengths`` (one per item), of the items sorted by length
    (stable: equal lengths keep their order)."""
    order = sorted(range(len(items)), key=lambda i: lengths[i]) if lengths is not None else range(len(items))
    ordered = [items[i] for i in order]
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def padded_positions(micro: Sequence[Sequenced]) -> tuple[int, int]:
    """(real positions, all positions) of ``micro`` once padded to one rectangle: rows x (longest prompt + longest
    response), as :func:`tapo.train.logprobs.pad_batch` lays it out."""
    real = sum(sequence_length(t) for t in micro)
    width = max(len(t.prompt_ids) for t in micro) + max(1, max(len(t.response_ids) for t in micro))
    return real, len(micro) * width
