"""Evaluation metrics against hand-counted trajectories."""

from __future__ import annotations

from itertools import combinations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tapo.data.schema import Example
from tapo.eval.metrics import OVERALL, accuracy_by_searches, compute_metrics, pass_at_k
from tapo.eval.samples import to_records
from tapo.eval.tables import adaptive_table, metric_table, to_markdown
from tapo.records import RewardBreakdown, Trajectory, Turn


def traj(qid, source, acc, calls=(), failed=0, fmt=True, tokens=10, needs=None) -> Trajectory:
    turns = [Turn(action=a, content="x", ok=i >= failed) for i, a in enumerate(calls)]
    turns.append(Turn(action="answer", content="a"))
    meta = {} if needs is None else {"needs": list(needs)}
    score = 1.0 if acc else (-1.0 if not fmt else 0.0)
    return Trajectory(
        prompt_ids=[1, 2],
        response_ids=list(range(tokens + 5)),
        model_mask=[1] * tokens + [0] * 5,
        turns=turns,
        example=Example(id=qid, data_source=source, question=f"q {qid}", golds=["a"], meta=meta),
        reward=RewardBreakdown(format_ok=fmt, score=score, penalty=0.0, total=score, acc=acc),
    )


@pytest.fixture
def sample():
    # nq: q1 (2 samples: 1 correct, 1 wrong), q2 (2 samples: both wrong, one broken format)
    # gsm8k: q3 (2 samples: both correct, code calls)
    return [
        traj("q1", "nq", True, calls=["search", "search"], tokens=20, needs=["search"]),
        traj("q1", "nq", False, calls=["search"], failed=1, tokens=10, needs=["search"]),
        traj("q2", "nq", False, tokens=6, needs=[]),
        traj("q2", "nq", False, calls=["search"], fmt=False, tokens=4, needs=[]),
        traj("q3", "gsm8k", True, calls=["code"], tokens=8, needs=["code"]),
        traj("q3", "gsm8k", True, calls=["code", "search"], tokens=12, needs=["code"]),
    ]


def test_hand_counted_per_source_and_overall(sample):
    m = compute_metrics(to_records(sample))
    assert list(m) == ["gsm8k", "nq", OVERALL]
    nq, gsm, overall = m["nq"], m["gsm8k"], m[OVERALL]
    assert (nq.questions, nq.samples, nq.k) == (2, 4, 2)
    assert nq.acc == pytest.approx(0.25)  # q1 0.5, q2 0
    assert nq.pass_at_k == pytest.approx(0.5)  # q1 has a correct sample, q2 none
    assert nq.format_error_rate == pytest.approx(0.25)  # q1 0, q2 0.5
    assert nq.mean_score == pytest.approx((0.5 + (-0.5)) / 2)
    assert nq.tool_calls_mean == {"search": pytest.approx((1.5 + 0.5) / 2), "code": 0.0}
    assert nq.tool_calls_distribution["search"] == {0: 1, 1: 2, 2: 1}
    assert nq.tool_use_share["search"] == pytest.approx((1.0 + 0.5) / 2)
    assert nq.tool_calls_total == 4
    assert nq.tool_failure_rate == pytest.approx(1 / 4)
    assert nq.model_tokens_mean == pytest.approx((15 + 5) / 2)
    assert nq.response_tokens_mean == pytest.approx((20 + 10) / 2)
    assert gsm.acc == 1.0 and gsm.tool_failure_rate == 0.0
    assert gsm.tool_calls_mean == {"search": 0.5, "code": 1.0}
    assert overall.questions == 3 and overall.acc == pytest.approx((0.5 + 0 + 1) / 3)
    assert overall.pass_at_k == pytest.approx(2 / 3)


def test_adaptive_tool_use_split_by_needs(sample):
    a = compute_metrics(to_records(sample))[OVERALL].adaptive
    assert a is not None
    assert (a.questions_needing_tools, a.questions_without_need) == (2, 1)
    assert a.call_rate_when_needed == 1.0  # every sample of q1 and q3 called a tool
    assert a.call_rate_when_not_needed == pytest.approx(0.5)  # q2: one of two samples searched
    assert a.needed_tools_rate == 1.0
    rows = adaptive_table(compute_metrics(to_records(sample)))
    assert [r[0] for r in rows] == ["gsm8k", "nq", OVERALL]


def test_no_needs_means_no_adaptive_stats():
    records = to_records([traj("a", "nq", True), traj("b", "nq", False)])
    assert compute_metrics(records)[OVERALL].adaptive is None


def test_rows_read_back_give_the_same_trajectories_and_records(sample):
    """One row schema: what the trainer, the evaluator and chat write reads back to the same trajectory."""
    rows = [t.to_row(step=3) for t in sample]
    assert [Trajectory.from_row(r) for r in rows] == sample
    assert to_records(Trajectory.from_row(r) for r in rows) == to_records(sample)


def test_unscored_trajectories_and_foreign_rows_are_a_clear_error():
    example = Example(id="a", question="q", data_source="nq", golds=["x"])
    with pytest.raises(ValueError, match="of question 'a' has no reward"):
        to_records([Trajectory(prompt_ids=[1], example=example)])
    with pytest.raises(ValueError, match="lacks example, prompt_ids"):
        Trajectory.from_row({"question": "q", "response": "r", "reward": None, "step": 1})


def test_accuracy_by_searches(sample):
    assert accuracy_by_searches(to_records(sample)) == {0: (0.5, 2), 1: (pytest.approx(1 / 3), 3), 2: (1.0, 1)}


def test_tables_have_one_row_per_source(sample):
    headers, rows = metric_table(compute_metrics(to_records(sample)))
    text = to_markdown(headers, rows)
    assert len(text.strip().splitlines()) == 2 + 3
    assert rows[-1][0] == OVERALL and rows[-1][3].startswith("50.0 [")  # accuracy with its 95 % interval
    assert "search calls/q" in headers and "uses code %" in headers


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


@given(st.integers(1, 8).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_is_the_subset_probability(nck):
    n, c, k = nck
    assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k))
    assert pass_at_k(n, c, 1) == pytest.approx(c / n)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError):
        pass_at_k(2, 3, 1)
