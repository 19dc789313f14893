"""Symbolic math equivalence through the math-verify worker process, and its hard time-out."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tapo.rewards.mathverify import MathVerifier
from tapo.rewards.scorers import MathScorer

PATHOLOGICAL = ["$(10^{6})!$", "\\frac{" * 300 + "1" + "}{2}" * 300]


@pytest.fixture(scope="module")
def math_scorer():
    scorer = MathScorer(timeout_s=10.0)
    yield scorer
    scorer.close()


@pytest.mark.parametrize(
    ("prediction", "gold", "score"),
    [
        ("\\frac{1}{2}", "0.5", 1.0),
        ("$\\frac{1}{2}$", "1/2", 1.0),
        ("\\boxed{3}", "3", 1.0),
        ("x(x+2)", "x^2+2x", 1.0),
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", 1.0),
        ("\\pi", "3.14159265358979", 1.0),
        ("1.5e3", "1500", 1.0),  # plain numbers never reach math-verify, which reads 1.5e3 as 1.5
        ("\\$18", "18", 1.0),
        ("1,000", "1000", 1.0),
        ("2", "x^2", 0.0),
        ("3", "4", 0.0),
        ("x+1", "x+2", 0.0),
        ("", "3", 0.0),
        ("not math at all", "3", 0.0),
    ],
)
def test_math_equivalence(math_scorer, prediction, gold, score):
    assert math_scorer(prediction, gold) == score


def test_math_works_from_a_thread(math_scorer):
    """In-process math-verify raises ValueError off the main thread (signal.alarm); the worker does not care."""
    results: list[float] = []
    worker = threading.Thread(target=lambda: results.append(math_scorer("x(x+2)", "x^2+2x")))
    worker.start()
    worker.join()
    assert results == [1.0]


@pytest.mark.parametrize("expression", PATHOLOGICAL)
def test_pathological_input_returns_within_its_time_out(math_scorer, expression):
    """0.5 s is below math-verify's own whole-second alarm: only the worker's kill can return this early."""
    verifier = math_scorer.verifier
    assert verifier.equivalent("2", "2")  # a live worker: start-up (importing sympy) is not part of the time-out
    verifier.timeout_s = 0.5
    try:
        start = time.monotonic()
        assert verifier.equivalent(expression, "1") is False
        assert time.monotonic() - start < 0.5 + 1.0
    finally:
        verifier.timeout_s = 10.0
    assert verifier.equivalent("\\frac{2}{4}", "0.5")  # a fresh worker answers after a kill


def test_bad_time_out_is_rejected():
    with pytest.raises(ValueError, match="positive"):
        MathVerifier(0)
    with pytest.raises(ValueError, match="at least 256 MB"):
        MathVerifier(5, memory_mb=64)


def test_the_worker_runs_under_its_memory_cap():
    verifier = MathVerifier(10.0, memory_mb=700)
    try:
        assert verifier.equivalent("\\frac{1}{2}", "0.5")
        limits = Path(f"/proc/{verifier._process.pid}/limits").read_text()
        [line] = [line for line in limits.splitlines() if line.startswith("Max address space")]
        assert line.split()[3:5] == [str(700 * 2**20)] * 2  # soft and hard
    finally:
        verifier.close()
