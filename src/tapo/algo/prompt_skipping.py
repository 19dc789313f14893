"""GRESO's pre-rollout skipping as pure functions: how likely a prompt is to be skipped, and how the exploration
probabilities move (Zheng et al., "Act Only When It Pays", arXiv 2506.02177; docs/training.md).

A prompt whose group was constant (all answers right, or all wrong) in its last ``z`` samplings in a row is likely
to be constant again; rolling it out buys no gradient. It is skipped with probability ``1 - p ** z``, where ``p``
is the exploration probability of that outcome: a prompt is never skipped for good, and the longer its streak the
less often it is retried. ``p`` is kept apart for all-right and all-wrong groups and moved, once per step, toward a
target share of such groups among those rolled out: too many constant groups of one outcome, explore it less.
"""

from __future__ import annotations

from collections.abc import Sequence

MIXED = "mixed"  # the group's answers differ: an informative group
ALL_RIGHT = "right"  # every answer right: constant, too easy for now
ALL_WRONG = "wrong"  # every answer wrong: constant, too hard for now
CONSTANT_OUTCOMES = (ALL_RIGHT, ALL_WRONG)


def group_outcome(constant: bool, right: bool) -> str:
    """The outcome of a group: ``constant`` from the dynamic-sampling test, ``right`` the accuracy of any member
    (all members share it when the group is constant)."""
    if not constant:
        return MIXED
    return ALL_RIGHT if right else ALL_WRONG


def constant_streak(outcomes: Sequence[str]) -> tuple[str, int]:
    """The latest outcome and how many of the most recent ``outcomes`` (oldest first) repeat it; a mixed or empty
    history is ``(MIXED, 0)``: nothing predicts a constant group."""
    if not outcomes or outcomes[-1] == MIXED:
        return MIXED, 0
    last = outcomes[-1]
    streak = 0
    for outcome in reversed(outcomes):
        if outcome != last:
            break
        streak += 1
    return last, streak


def kind_prior(outcomes: Sequence[str], window: int) -> tuple[str, int]:
    """What a kind's recent groups (oldest first) say about a prompt of that kind never sampled yet: a streak of one
    when its last ``window`` groups all had the same constant outcome, else nothing (``window`` 0: no prior)."""
    recent = list(outcomes[-window:]) if window > 0 else []
    if len(recent) < window or not recent or recent[0] == MIXED or any(o != recent[0] for o in recent):
        return MIXED, 0
    return recent[0], 1


def skip_probability(outcome: str, streak: int, explore: dict[str, float]) -> float:
    """``1 - p ** streak`` with ``p = explore[outcome]``; 0 when the prediction is not a constant group."""
    if outcome == MIXED or streak <= 0:
        return 0.0
    return 1.0 - explore[outcome] ** streak


def adapt_explore(explore: float, observed: float, target: float, step: float, floor: float) -> float:
    """One step of the controller: the share ``observed`` of rolled-out groups with this outcome above ``target``
    means too many are still rolled out, so explore less (``-step``); at or below it, explore more (``+step``).
    Kept in ``[floor, 1]``, so every prompt keeps a chance of being retried."""
    moved = explore - step if observed > target else explore + step
    return min(1.0, max(floor, moved))
