"""Several trajectories in one row of the update's forward pass, so that almost none of it is padding.

A padded micro-batch (:func:`tapo.train.logprobs.pad_batch`) is as wide as its longest prompt plus its longest
response in every row. Packed, each row holds whole sequences (prompt then response) one after another, no row wider
than the micro-batch's longest sequence (first-fit in decreasing length), and the position ids restart at 0 with
each sequence. transformers (5.x) reads those resets as sequence boundaries when no attention mask is passed and
builds the block-diagonal causal mask for the sdpa and eager attention (``masking_utils.find_packed_sequence_indices``),
so each token sees exactly the tokens it saw alone, at the same positions: the log-probs and gradients equal the
padded computation's (tests/unit/test_train_loop.py). Only the end of a row is padding, as one more "sequence" that
no real token attends to. The packed batch itself is :func:`tapo.train.logprobs.pack_batch`'s.
"""

from __future__ import annotations

from collections.abc import Sequence


def pack_rows(lengths: Sequence[int]) -> list[list[int]]:
    """Indices of the sequences in each row: first-fit in decreasing length, rows no wider than the longest."""
    width = max(lengths)
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, free in enumerate(room) if free >= lengths[index]), None)
        if row is None:
            rows.append([])
            room.append(width)
            row = len(rows) - 1
        rows[row].append(index)
        room[row] -= lengths[index]
    return rows


def packed_positions(lengths: Sequence[int]) -> tuple[int, int]:
    """(real positions, all positions) of sequences of ``lengths`` once packed by :func:`pack_rows`."""
    return sum(lengths), len(pack_rows(lengths)) * max(lengths)
