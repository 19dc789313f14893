"""DAPO's soft overlong penalty (spec §3), on model tokens only.

Counting only the tokens the model sampled (the loss mask) matters: tool outputs are the environment's
text, and a model must not be punished for a long search result it did not write.
"""

from __future__ import annotations


def overlong_penalty(n_model_tokens: int, max_response_tokens: int, buffer: int, factor: float) -> float:
    """``min(-(L - (M - B)) / B, 0) * factor``: 0 up to ``M - B`` tokens, then linear down to ``-factor`` at ``M``."""
    if n_model_tokens < 0:
        raise ValueError(f"n_model_tokens must be >= 0, got {n_model_tokens}")
    if not 0 < buffer < max_response_tokens:
        raise ValueError(f"the overlong buffer ({buffer}) must be in (0, max_response_tokens={max_response_tokens})")
    return min(-(n_model_tokens - (max_response_tokens - buffer)) / buffer, 0.0) * factor
