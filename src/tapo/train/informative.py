"""How much of a step's rollout bought gradient: the share of sampled trajectories in informative groups, and of
the rest, how much was all right and how much all wrong.

A group whose answers all got the same accuracy (a constant group) has zero advantage everywhere, so its
trajectories cost a rollout and teach nothing; dynamic sampling drops them after the fact, skipping
(:mod:`tapo.train.prompt_history`) tries not to roll them out at all. Which kind of constant group dominates says
which lever could help: all wrong, a stronger warm start or guidance (the policy never succeeds there); all right,
skipping (it has nothing left to learn there). Counted over every group the step sampled, all rounds, before the
filter and before guidance, overall and per question kind (:func:`tapo.data.kinds.kind_of`).
"""

from __future__ import annotations

from collections.abc import Sequence

from tapo.data.kinds import kind_of
from tapo.train.source import Group

KEY = "sampling/informative_frac"
ALL_RIGHT_KEY = "sampling/all_right_frac"
ALL_WRONG_KEY = "sampling/all_wrong_frac"
_KEYS = (KEY, ALL_RIGHT_KEY, ALL_WRONG_KEY)


def informative_metrics(groups: Sequence[Group], constant: Sequence[bool]) -> dict[str, float]:
    """``sampling/informative_frac``, ``sampling/all_right_frac`` and ``sampling/all_wrong_frac``, each also per
    ``/<kind>``: trajectories in non-constant groups, in constant groups with every answer right, and in constant
    groups with every answer wrong, over all trajectories sampled (of that kind; the three add up to 1). Groups
    without an example count as kind ``?``."""
    if len(groups) != len(constant):
        raise ValueError(f"{len(groups)} groups but {len(constant)} constancy flags")
    totals: dict[str, list[int]] = {}  # kind -> trajectories [informative, all right, all wrong]
    for group, flat in zip(groups, constant, strict=True):
        if not group:
            continue
        counts = totals.setdefault(kind_of(group[0].example) if group[0].example is not None else "?", [0, 0, 0])
        # a constant group's members share one accuracy
        counts[0 if not flat else 1 if group[0].scored.acc else 2] += len(group)
    sampled = sum(sum(c) for c in totals.values())
    if not sampled:
        return {}
    row = {key: sum(c[i] for c in totals.values()) / sampled for i, key in enumerate(_KEYS)}
    for kind, counts in sorted(totals.items()):
        row.update({f"{key}/{kind}": counts[i] / sum(counts) for i, key in enumerate(_KEYS)})
    return row
