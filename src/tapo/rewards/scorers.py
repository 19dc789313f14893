"""Answer scorers: ``scorer(prediction, gold) -> float`` in [0, 1], and the best score over several golds.

Each scorer gets the extracted answer (the content of ``<answer>``) and one gold answer. An empty gold
never matches: it is a data error, and a substring rule would otherwise reward every prediction.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

from rapidfuzz.distance import Levenshtein

from tapo.rewards.mathverify import MathVerifier
from tapo.rewards.normalize import normalize, normalize_answer, original_normalize
from tapo.rewards.numbers import parse_number

Scorer = Callable[[str, str], float]

CALCULATOR_TOLERANCE = 1e-3
COMPLEX_RELATIVE_TOLERANCE = 0.05
NQ_MAX_DISTANCE_RATIO = 0.5
TAPO_ANSWER_CHARS = 100  # TAPO scores the last 100 characters of an answer


def exact(prediction: str, gold: str) -> float:
    """docs/method.md §3 ``exact``: equal after :func:`normalize`."""
    gold_n = normalize(gold)
    return float(bool(gold_n) and normalize(prediction) == gold_n)


def nq(prediction: str, gold: str) -> float:
    """docs/method.md §3 ``nq``: 1 if the gold is a substring of the prediction; else 1 − edit distance / max length
    when that ratio is below 0.5; else 0 (both normalized)."""
    gold_n, prediction_n = normalize(gold), normalize(prediction)
    if not gold_n or not prediction_n:
        return 0.0
    if gold_n in prediction_n:
        return 1.0
    ratio = Levenshtein.normalized_distance(prediction_n, gold_n)
    return 1.0 - ratio if ratio < NQ_MAX_DISTANCE_RATIO else 0.0


def _numbers(prediction: str, gold: str, strict: bool = False) -> tuple[float, float] | None:
    gold_value = parse_number(gold, strict)
    prediction_value = parse_number(prediction, strict) if gold_value is not None else None
    return None if prediction_value is None or gold_value is None else (prediction_value, gold_value)


def calculator(prediction: str, gold: str) -> float:
    """docs/method.md §3 ``calculator``: one number, absolute error below 1e-3."""
    values = _numbers(prediction, gold)
    return float(values is not None and abs(values[0] - values[1]) < CALCULATOR_TOLERANCE)


def complex_(prediction: str, gold: str) -> float:
    """docs/method.md §3 ``complex``: one number, relative error below 5 % (absolute 1e-3 when the gold is 0)."""
    values = _numbers(prediction, gold)
    if values is None:
        return 0.0
    predicted, expected = values
    if expected == 0:
        return float(abs(predicted) < CALCULATOR_TOLERANCE)
    return float(abs(predicted - expected) / abs(expected) < COMPLEX_RELATIVE_TOLERANCE)


def tapo_complex(prediction: str, gold: str) -> float:
    """TAPO's own ``complex`` rule, for ``reward.preset: tapo``: the answer's last 100 characters, normalized as TAPO
    does (:func:`original_normalize`), cut down to its digits, signs and points and read with Python's ``complex()``;
    the gold read the same way, uncut; relative error below 5 %.

    So ``between 1 and 6`` is 16, ``1_000`` is 1000, ``1/2`` is 12 and ``1e3`` is 13 (docs/rewards.md lists where
    this differs from :func:`complex_`). Where TAPO raises (a gold ``complex()`` cannot read, or a gold of 0 against a
    number), this scores 0.
    """
    glued = "".join(ch for ch in original_normalize(prediction[-TAPO_ANSWER_CHARS:]) if ch.isdigit() or ch in "+-.")
    try:
        expected = complex(original_normalize(gold))
        return float(abs(complex(glued) - expected) / abs(expected) < COMPLEX_RELATIVE_TOLERANCE)
    except (ValueError, ZeroDivisionError):  # complex() refused a string, or the gold is 0
        return 0.0


def em(prediction: str, gold: str) -> float:
    """Search-R1 exact match: equal after :func:`normalize_answer`."""
    gold_n = normalize_answer(gold)
    return float(bool(gold_n) and normalize_answer(prediction) == gold_n)


def f1(prediction: str, gold: str) -> float:
    """Token F1 (SQuAD / Search-R1) over :func:`normalize_answer` tokens."""
    gold_tokens, prediction_tokens = normalize_answer(gold).split(), normalize_answer(prediction).split()
    common = sum((Counter(gold_tokens) & Counter(prediction_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def auto(prediction: str, gold: str) -> float:
    """A number gold is scored by ``calculator``, a text gold by ``em``: for sources that mix both (TAPO-mini)."""
    return calculator(prediction, gold) if parse_number(gold) is not None else em(prediction, gold)


class MathScorer:
    """Symbolic equivalence (LaTeX, fractions, ``\\boxed{}``) by math-verify, bounded by ``timeout_s`` per gold.

    Two plain numbers are compared here (math-verify reads ``1.5e3`` as 1.5 and rejects ``\\$18``), without a
    round trip to the worker process; anything else goes to :class:`MathVerifier`.
    """

    def __init__(self, timeout_s: float, memory_mb: int = 2048) -> None:
        self.verifier = MathVerifier(timeout_s, memory_mb)

    def __call__(self, prediction: str, gold: str) -> float:
        if not prediction.strip() or not gold.strip():
            return 0.0
        values = _numbers(prediction, gold, strict=True)
        if values is not None:
            return float(math.isclose(values[0], values[1], rel_tol=1e-6, abs_tol=1e-9))
        return float(self.verifier.equivalent(prediction, gold))

    def close(self) -> None:
        self.verifier.close()


# The scorers that need no state; ``math`` needs a worker process and is added by the registry.
PURE_SCORERS: dict[str, Scorer] = {
    "exact": exact,
    "nq": nq,
    "calculator": calculator,
    "complex": complex_,
    "tapo_complex": tapo_complex,
    "em": em,
    "f1": f1,
    "auto": auto,
}


def best_score(scorer: Scorer, prediction: str, golds: Sequence[str]) -> float:
    """The best score over several gold answers (stops at a perfect one: math scoring can be slow)."""
    best = 0.0
    for gold in golds:
        best = max(best, scorer(prediction, gold))
        if best >= 1.0:
            break
    return best
