"""Numbers for generated data: exact answers of generated arithmetic, and splitting a total by shares."""

from __future__ import annotations

REFERENCE_YEAR = 2024
"""'Years before now' questions count to this fixed year, so their golds do not change with the calendar."""

_ALLOWED = {"round": round, "abs": abs}


def evaluate(expression: str) -> str:
    """The text ``print(expression)`` shows, so a gold can never disagree with the code an oracle runs to get it.

    Evaluate an expression this package generated (numbers, + - * / % **, round, abs) and return what ``print``
    would show. Never call it on model or user text: it is ``eval`` with a tiny namespace, not a sandbox."""
    return str(eval(expression, {"__builtins__": _ALLOWED}))


def apportion(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Split ``total`` by ``shares`` (any positive weights) with largest remainders, so the parts add up exactly;
    ties go to the earlier key, so the result is deterministic."""
    weight = sum(shares.values())
    raw = {key: total * share / weight for key, share in shares.items()}
    counts = {key: int(value) for key, value in raw.items()}
    order = list(shares)
    by_remainder = sorted(raw, key=lambda key: (-(raw[key] - counts[key]), order.index(key)))
    for key in by_remainder[: total - sum(counts.values())]:
        counts[key] += 1
    return counts
