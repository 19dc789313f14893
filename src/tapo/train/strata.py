"""An epoch's prompt order in which every stretch holds each kind in proportion to the training set.

One kind's move cannot then spread unopposed within a step: whatever window of the order a step draws, each kind
has about its share of it. The order is built greedily: position ``m`` goes to the kind furthest behind its
quota ``(m + 1) * n_kind / n``, so after any prefix every kind is within one prompt of its quota, and any stretch
of the order within two. Each kind's prompts keep the order they are given in (shuffled by the caller), and
every prompt appears once.
"""

from __future__ import annotations

from collections.abc import Sequence


def stratified_order(members: dict[str, list[int]], kind_rank: Sequence[str]) -> list[int]:
    """The indices of ``members`` (kind -> its indices in draw order) interleaved by quota; ``kind_rank`` (every
    kind once) breaks ties between kinds equally behind."""
    total = sum(len(indices) for indices in members.values())
    sizes = {kind: len(indices) for kind, indices in members.items()}
    taken = dict.fromkeys(members, 0)
    order: list[int] = []
    for position in range(total):
        kind = max(
            (k for k in kind_rank if taken[k] < sizes[k]),
            key=lambda k: (position + 1) * sizes[k] / total - taken[k],  # first of the most behind, in kind_rank
        )
        order.append(members[kind][taken[kind]])
        taken[kind] += 1
    return order


def group_by_kind(kinds: Sequence[str]) -> dict[str, list[int]]:
    """kind -> the indices of that kind, ascending; kinds in order of first appearance."""
    members: dict[str, list[int]] = {}
    for index, kind in enumerate(kinds):
        members.setdefault(kind, []).append(index)
    return members
