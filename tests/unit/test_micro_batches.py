"""Micro-batches cut by length, and their padding, checked by hand."""

from __future__ import annotations

from tapo.records import Trajectory
from tapo.train.micro_batches import cut, padded_positions


def test_cut_keeps_order_or_sorts_by_length() -> None:
    assert cut("abcde", 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert cut("abcde", 2, [5, 1, 4, 1, 2]) == [["b", "d"], ["e", "c"], ["a"]]  # stable: b before d


def test_padded_positions_count_the_rectangle_pad_batch_builds() -> None:
    short = Trajectory([1, 2], [3])  # 3 positions
    long = Trajectory([1, 2, 3, 4], [5, 6, 7, 8, 9, 10])  # 10 positions
    # 2 rows x (longest prompt 4 + longest response 6) = 20 positions, 13 of them real
    assert padded_positions([short, long]) == (13, 20)
    assert padded_positions([Trajectory([1], [])]) == (1, 2)  # an empty response still takes one column
