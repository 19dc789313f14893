"""Reward shaping terms added to the score: DAPO's overlong penalty (docs/method.md §3), on model tokens only, and the
optional tool cost of OTC (arXiv 2504.14870, "Acting Less is Reasoning More"), which TAPO does not have.

Counting only the tokens the model sampled (the loss mask) matters: tool outputs are the environment's
text, and a model must not be punished for a long search result it did not write.
"""

from __future__ import annotations

import math
from typing import Literal


def overlong_penalty(n_model_tokens: int, max_response_tokens: int, buffer: int, factor: float) -> float:
    """``min(-(L - (M - B)) / B, 0) * factor``: 0 up to ``M - B`` tokens, then linear down to ``-factor`` at ``M``."""
    if n_model_tokens < 0:
        raise ValueError(f"n_model_tokens must be >= 0, got {n_model_tokens}")
    if not 0 < buffer < max_response_tokens:
        raise ValueError(f"the overlong buffer ({buffer}) must be in (0, max_response_tokens={max_response_tokens})")
    return min(-(n_model_tokens - (max_response_tokens - buffer)) / buffer, 0.0) * factor


ToolCostForm = Literal["additive", "otc"]

FORM_DEFAULTS: dict[str, tuple[float, float]] = {"additive": (0.1, 1.0), "otc": (1.0, 4.0)}
"""``reward.tool_cost.form`` -> (weight, c) when the config leaves them unset: tapo's bonus; OTC-PO's alpha and c."""


def ppo_tool_reward(calls: int, half_calls: float) -> float:
    """OTC-PPO's ``r_tool = cos(m * pi / (2m + c))`` for m calls: 1 at no call, 1/2 at ``m = c`` (cos(pi/3)), falling
    towards 0 (never below) as calls pile up."""
    if calls < 0:
        raise ValueError(f"calls must be >= 0, got {calls}")
    if half_calls <= 0:
        raise ValueError(f"half_calls must be > 0, got {half_calls}")
    return math.cos(calls * math.pi / (2 * calls + half_calls))


def grpo_tool_reward(calls: int, optimal: int, half_calls: float) -> float:
    """OTC-GRPO's ``r_tool`` for m calls when n (``optimal``, the fewest calls among the group's right answers) would
    do: ``sin(f * pi / (2n))`` with ``f = 2nm / (m + n)``, 1 at ``m = n`` and falling towards 0 as m grows (f tends
    to 2n); with ``n = 0`` (some right answer needed no call) it is OTC-PPO's cos form, 1 only at no call."""
    if optimal < 0:
        raise ValueError(f"optimal calls must be >= 0, got {optimal}")
    if optimal == 0:
        return ppo_tool_reward(calls, half_calls)
    if calls < 0:
        raise ValueError(f"calls must be >= 0, got {calls}")
    mapped = 2 * optimal * calls / (calls + optimal)
    return math.sin(mapped * math.pi / (2 * optimal))


def tool_cost(score: float, acc: bool, r_tool: float, form: ToolCostForm, weight: float) -> float:
    """What the tool term adds to a trajectory's total: 0 unless the answer is right.

    ``additive``: ``weight * r_tool``, a bonus on top of the score (a right answer always beats a wrong one).
    ``otc``: OTC-PO's ``r = alpha * r_tool * r_answer`` with ``alpha = weight``: the score becomes
    ``weight * r_tool * score``, so the term is that minus the score (at most 0 for ``weight <= 1``).
    """
    if not acc:
        return 0.0
    if form == "additive":
        return weight * r_tool
    return weight * r_tool * score - score
