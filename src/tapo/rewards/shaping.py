"""Reward shaping terms added to the score: DAPO's overlong penalty (docs/method.md §3), on model tokens only, and the
optional tool-cost bonus of OTC (arXiv 2504.14870), which TAPO does not have.

Counting only the tokens the model sampled (the loss mask) matters: tool outputs are the environment's
text, and a model must not be punished for a long search result it did not write.
"""

from __future__ import annotations

import math


def overlong_penalty(n_model_tokens: int, max_response_tokens: int, buffer: int, factor: float) -> float:
    """``min(-(L - (M - B)) / B, 0) * factor``: 0 up to ``M - B`` tokens, then linear down to ``-factor`` at ``M``."""
    if n_model_tokens < 0:
        raise ValueError(f"n_model_tokens must be >= 0, got {n_model_tokens}")
    if not 0 < buffer < max_response_tokens:
        raise ValueError(f"the overlong buffer ({buffer}) must be in (0, max_response_tokens={max_response_tokens})")
    return min(-(n_model_tokens - (max_response_tokens - buffer)) / buffer, 0.0) * factor


def tool_bonus(calls: int, weight: float, half_calls: float) -> float:
    """OTC-PPO's tool reward ``cos(m * pi / (2m + c))`` times ``weight``, for a right answer made with m calls.

    1 at no call, halved at ``m = c`` (``half_calls``: cos(pi/3) = 1/2) and falling towards 0 as calls pile up,
    never below it: a right answer always beats a wrong one, and fewer calls only break ties between right ones.
    """
    if calls < 0:
        raise ValueError(f"calls must be >= 0, got {calls}")
    if half_calls <= 0:
        raise ValueError(f"half_calls must be > 0, got {half_calls}")
    return weight * math.cos(calls * math.pi / (2 * calls + half_calls))
