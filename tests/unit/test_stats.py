"""95 % intervals and goal verdicts: known values, seeded reproducibility, pairing, and the rule that a goal is
never ticked on a point estimate."""

from __future__ import annotations

import pytest

from tapo.stats import Interval, Verdict, mean_interval, paired_difference, share_interval, verdict


def test_wilson_for_shares_of_questions():
    none = share_interval([0] * 40)
    assert (none.estimate, none.low, none.method, none.n) == (0.0, 0.0, "wilson", 40)
    assert none.high == pytest.approx(0.0876, abs=1e-4)  # 0 of 40 is not "0 for sure"
    half = share_interval([1] * 20 + [0] * 20)
    assert half.low == pytest.approx(0.352, abs=1e-3) and half.high == pytest.approx(0.648, abs=1e-3)
    assert half.pct() == "50.0 [35.2, 64.8]"


def test_bootstrap_is_seeded_and_covers_the_mean():
    values = [0.0, 0.5, 1.0, 0.25, 0.75, 1.0, 0.0, 0.5] * 4  # K > 1 samples per question: fractions
    first, again = share_interval(values), share_interval(values)
    assert first == again and first.method == "bootstrap"
    assert first.low < first.estimate < first.high
    assert mean_interval(values, seed=1) != mean_interval(values, seed=2)
    wider = mean_interval(values[:8])
    assert wider.high - wider.low > first.high - first.low  # fewer questions, wider interval
    calls = mean_interval([0, 0, 0, 0])  # a mean of counts is never a Wilson share
    assert (calls.low, calls.high, calls.method) == (0.0, 0.0, "bootstrap")


def test_paired_difference_keeps_questions_together():
    # Model B answers what A answers plus 5 more of 40: every question moves the same way.
    a = [1.0] * 14 + [0.0] * 26
    b = [1.0] * 9 + [0.0] * 31
    paired = paired_difference(a, b)
    assert paired.estimate == pytest.approx(0.125) and paired.method == "paired bootstrap"
    assert paired.low > 0  # the pairing sees that no question got worse ...
    unpaired_low = share_interval(a).low - share_interval(b).high
    assert unpaired_low < 0  # ... two separate intervals would overlap
    tie = paired_difference([0.0] * 4, [0.0] * 4)  # no question changed: not a certain tie on 4 questions
    assert (tie.estimate, tie.method) == (0.0, "paired, Wilson bound") and tie.low == -tie.high
    assert tie.high == pytest.approx(share_interval([0] * 4).high) and verdict(tie, ">=", 0.0) is Verdict.NOISE
    better = paired_difference([1.0] * 40, [0.0] * 40)
    assert better.high == 1.0 and better.low == pytest.approx(1 - share_interval([0] * 40).high)
    with pytest.raises(ValueError, match="same questions"):
        paired_difference(a, b[:-1])
    with pytest.raises(ValueError, match="at least one"):
        share_interval([])


@pytest.mark.parametrize(
    ("low", "high", "op", "bound", "expected"),
    [
        (0.05, 0.225, ">=", 0.10, Verdict.NOISE),  # +12.5 on 40 questions: not a met "≥ 10 points"
        (0.11, 0.30, ">=", 0.10, Verdict.MET),
        (-0.05, 0.08, ">=", 0.10, Verdict.NOT_MET),
        (0.0, 0.1, ">", 0.0, Verdict.NOISE),
        (0.01, 0.1, ">", 0.0, Verdict.MET),
        (-0.1, 0.0, ">", 0.0, Verdict.NOT_MET),
        (0.0, 0.08, "<=", 0.10, Verdict.MET),
        (0.05, 0.2, "<=", 0.10, Verdict.NOISE),
        (0.12, 0.2, "<=", 0.10, Verdict.NOT_MET),
        (-0.05, 0.04, "reaches", 0.0, Verdict.MET),  # no loss: a difference whose interval holds 0
        (0.01, 0.04, "reaches", 0.0, Verdict.MET),
        (-0.09, -0.01, "reaches", 0.0, Verdict.NOT_MET),  # a loss beyond the noise
    ],
)
def test_a_goal_is_decided_by_its_whole_interval(low, high, op, bound, expected):
    interval = Interval((low + high) / 2, low, high, 40, "paired bootstrap")
    assert verdict(interval, op, bound) is expected


def test_verdict_without_a_measurement_or_with_a_bad_comparison():
    assert verdict(None, ">=", 0.1) is Verdict.UNMEASURED
    with pytest.raises(ValueError, match="unknown comparison"):
        verdict(Interval(0, 0, 0, 1, "wilson"), "==", 0)
