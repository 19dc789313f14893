"""How much of a step's rollout bought gradient: the share of sampled trajectories in informative groups.

A group whose answers all got the same accuracy (a constant group) has zero advantage everywhere, so its
trajectories cost a rollout and teach nothing; dynamic sampling drops them after the fact, skipping
(:mod:`tapo.train.prompt_history`) tries not to roll them out at all. Counted over every group the step sampled,
all rounds, before the filter, overall and per question kind (:func:`tapo.data.kinds.kind_of`).
"""

from __future__ import annotations

from collections.abc import Sequence

from tapo.data.kinds import kind_of
from tapo.train.source import Group

KEY = "sampling/informative_frac"


def informative_metrics(groups: Sequence[Group], constant: Sequence[bool]) -> dict[str, float]:
    """``sampling/informative_frac`` and ``sampling/informative_frac/<kind>``: trajectories in non-constant groups
    over all trajectories sampled (of that kind); groups without an example count as kind ``?``."""
    if len(groups) != len(constant):
        raise ValueError(f"{len(groups)} groups but {len(constant)} constancy flags")
    totals: dict[str, list[int]] = {}  # kind -> [informative trajectories, trajectories]
    for group, flat in zip(groups, constant, strict=True):
        example = group[0].example if group else None
        counts = totals.setdefault(kind_of(example) if example is not None else "?", [0, 0])
        counts[0] += 0 if flat else len(group)
        counts[1] += len(group)
    informative = sum(c[0] for c in totals.values())
    sampled = sum(c[1] for c in totals.values())
    if not sampled:
        return {}
    row = {KEY: informative / sampled}
    row.update({f"{KEY}/{kind}": c[0] / c[1] for kind, c in sorted(totals.items()) if c[1]})
    return row
