"""95 % intervals for the numbers tapo reports, and the verdict of a goal checked against one.

One rule everywhere, so a table, ``summary.md``, the report and a training curve mean the same thing:

- a **share of questions** (per-question values all 0 or 1: greedy accuracy, "got a tool call"): the Wilson
  score interval (``scipy.stats.binomtest(...).proportion_ci``). Unlike a bootstrap it does not collapse to a
  point at 0 % or 100 % (0 of 40 right is 0.0 [0.0, 8.8], not 0.0 [0.0, 0.0]);
- any other **mean over questions** (accuracy averaged over K samples, calls per question): a percentile
  bootstrap over questions (``scipy.stats.bootstrap``), seeded, so the same data always gives the same interval.
  When every question gives the same value the bootstrap has nothing to resample and the interval is that value
  (no call on any of 40 questions: 0.00 [0.00, 0.00]); that is what the data say, overconfident on few questions;
- a **paired difference** (model A − model B on the same questions): the percentile bootstrap of the mean of
  the per-question differences, which keeps each question's pair together; a difference over the same questions
  is much tighter than two separate intervals suggest. When every question moved the same way (typically: no
  question changed) there is nothing to resample; for 0/1 values the interval is then the difference ± the Wilson
  upper bound of 0 of n (no change on 4 questions is +0.0 [-49.0, +49.0], not a certain tie).

The unit is the question: samples of one question are averaged first (they are not independent draws).
This module imports nothing from tapo: every stage (trainer, evaluation, pipeline) may use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95 % interval over ``n`` questions and the method that gave it."""

    estimate: float
    low: float
    high: float
    n: int
    method: str  # "wilson" | "bootstrap" | "paired bootstrap" | "paired, Wilson bound"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Interval:
        return cls(**row)

    def pct(self, digits: int = 1, signed: bool = False) -> str:
        """``35.0 [22.1, 50.5]`` in percent (``+12.5 [-2.5, +27.5]`` with ``signed``)."""
        spec = f"{'+' if signed else ''}.{digits}f"
        return f"{100 * self.estimate:{spec}} [{100 * self.low:{spec}}, {100 * self.high:{spec}}]"

    def plain(self, digits: int = 2) -> str:
        """``1.25 [0.90, 1.60]``: for means that are not shares (calls per question)."""
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _bootstrap(values: np.ndarray, method: str, seed: int) -> Interval:
    mean = float(values.mean())
    if len(values) < 2 or np.all(values == values[0]):
        return Interval(mean, mean, mean, len(values), method)  # nothing to resample: every resample is the same
    result = stats.bootstrap(
        (values,), np.mean, n_resamples=RESAMPLES, confidence_level=CONFIDENCE, method="percentile",
        rng=np.random.default_rng(seed),
    )  # fmt: skip
    ci = result.confidence_interval
    return Interval(mean, float(ci.low), float(ci.high), len(values), method)


def _values(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)  # [questions]
    if array.size == 0:
        raise ValueError("an interval needs at least one question")
    return array


def _binary(array: np.ndarray) -> bool:
    return bool(np.all((array == 0) | (array == 1)))


def mean_interval(values: Sequence[float], seed: int = SEED) -> Interval:
    """Mean of per-question values (calls per question, ...) with its seeded bootstrap 95 % interval."""
    return _bootstrap(_values(values), "bootstrap", seed)


def share_interval(values: Sequence[float], seed: int = SEED) -> Interval:
    """A share of questions (per-question values in [0, 1]): Wilson when every value is 0 or 1, else bootstrap."""
    array = _values(values)
    if not _binary(array):
        return _bootstrap(array, "bootstrap", seed)  # K > 1 samples per question: fractions
    hits = int(array.sum())
    ci = stats.binomtest(hits, array.size).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return Interval(hits / array.size, float(ci.low), float(ci.high), int(array.size), "wilson")


def paired_difference(a: Sequence[float], b: Sequence[float], seed: int = SEED) -> Interval:
    """Mean of ``a - b`` over the same questions (index-aligned) with its paired-bootstrap 95 % interval."""
    if len(a) != len(b):
        raise ValueError(f"paired values need the same questions: {len(a)} against {len(b)}")
    if not a:
        raise ValueError("a paired difference needs at least one question")
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)  # [questions] each
    diffs = va - vb
    if np.all(diffs == diffs[0]) and _binary(va) and _binary(vb):
        # Every question moved the same way (usually: none changed). A bootstrap would say [d, d]; the share of
        # questions that could have moved otherwise is only bounded by the Wilson interval of 0 of n.
        d, room = float(diffs[0]), share_interval(np.zeros(len(diffs))).high
        return Interval(d, max(-1.0, d - room), min(1.0, d + room), len(diffs), "paired, Wilson bound")
    return _bootstrap(diffs, "paired bootstrap", seed)


class Verdict(StrEnum):
    """Where a goal stands once its interval is known; a point estimate alone never ticks a goal."""

    MET = "met"
    NOT_MET = "not met"
    NOISE = "inside the noise"
    UNMEASURED = "not measured"


def verdict(interval: Interval | None, op: str, bound: float) -> Verdict:
    """``op`` is ``>=``, ``>`` or ``<=``: met when the whole interval satisfies it, not met when none of it does.

    ``reaches`` is the goal "no loss" (a difference reaching ``bound``): met unless the whole interval is below
    it. Asking for its whole interval to be at or above 0 would demand a significant gain, which an arm with no
    effect at all misses.
    """
    if interval is None:
        return Verdict.UNMEASURED
    low, high = interval.low, interval.high
    if op == "reaches":
        return Verdict.MET if high >= bound else Verdict.NOT_MET
    if op == ">=":
        met, missed = low >= bound, high < bound
    elif op == ">":
        met, missed = low > bound, high <= bound
    elif op == "<=":
        met, missed = high <= bound, low > bound
    else:
        raise ValueError(f"unknown comparison {op!r}: use >=, >, <= or reaches")
    return Verdict.MET if met else Verdict.NOT_MET if missed else Verdict.NOISE
