"""A flat view of one scored trajectory: the only fields evaluation metrics and plots look at.

Metrics run both on live ``Trajectory`` objects (right after an evaluation) and on rows read back from
``trajectories.jsonl`` (a training run, an older evaluation); reducing both to one record keeps the metric
code a set of pure functions over plain data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tapo.rollout.trajectory import Trajectory

TOOLS: tuple[str, ...] = ("search", "code")


@dataclass(frozen=True)
class SampleRecord:
    """One sampled answer to one question, with its reward and tool use."""

    question_id: str
    data_source: str
    acc: bool
    score: float
    total: float
    format_ok: bool
    tool_calls: Mapping[str, int] = field(default_factory=dict)
    tool_failures: int = 0
    model_tokens: int = 0
    response_tokens: int = 0
    needs: tuple[str, ...] | None = None  # tools the question needs (TAPO-mini ``meta.needs``); None = unknown

    @property
    def n_calls(self) -> int:
        return sum(self.tool_calls.values())


def _needs(example: Mapping[str, Any]) -> tuple[str, ...] | None:
    meta = example.get("meta") or {}
    needs = meta.get("needs")
    if needs is None:
        return None
    if isinstance(needs, str):
        needs = [needs]
    return tuple(sorted(str(n) for n in needs))


def _question_id(example: Mapping[str, Any]) -> str:
    qid = example.get("id") or example.get("question")
    if not qid:
        raise ValueError("trajectory example has neither an 'id' nor a 'question'")
    return str(qid)


def _tool_calls_from_turns(turns: Iterable[Mapping[str, Any]]) -> tuple[dict[str, int], int]:
    calls: dict[str, int] = {}
    failures = 0
    for turn in turns:
        action = turn.get("action")
        if action in ("search", "code"):
            calls[action] = calls.get(action, 0) + 1
            failures += 0 if turn.get("ok", True) else 1
    return calls, failures


def row_example(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """The example of a row: ``Trajectory.to_dict()`` nests it; the trainer's compact rows keep its fields flat."""
    return row.get("example") or {k: row[k] for k in ("id", "question", "golds", "data_source", "meta") if k in row}


def record_from_dict(row: Mapping[str, Any]) -> SampleRecord:
    """Build a record from a ``Trajectory.to_dict()`` row or a trainer ``trajectories.jsonl`` row.

    Unscored rows are an error (metrics need rewards). Trainer rows carry no turns, so tool failures count 0.
    """
    reward = row.get("reward")
    if not reward:
        raise ValueError("trajectory row has no reward: score it before computing metrics")
    example = row_example(row)
    if "turns" in row:
        calls, failures = _tool_calls_from_turns(row.get("turns") or [])
    else:
        calls, failures = {k: int(v) for k, v in (row.get("tool_calls") or {}).items()}, 0
    mask = row.get("loss_mask") or []
    return SampleRecord(
        question_id=_question_id(example),
        data_source=str(example.get("data_source") or "unknown"),
        acc=bool(reward["acc"]),
        score=float(reward["score"]),
        total=float(reward["total"]),
        format_ok=bool(reward["format_ok"]),
        tool_calls=calls,
        tool_failures=failures,
        model_tokens=int(row.get("n_model_tokens", row.get("model_tokens", sum(mask)))),
        response_tokens=len(row.get("response_ids") or mask),
        needs=_needs(example),
    )


def record_from_trajectory(traj: Trajectory) -> SampleRecord:
    if traj.reward is None:
        raise ValueError("trajectory has no reward: score it before computing metrics")
    return SampleRecord(
        question_id=_question_id(traj.example),
        data_source=str(traj.example.get("data_source") or "unknown"),
        acc=bool(traj.reward.acc),
        score=float(traj.reward.score),
        total=float(traj.reward.total),
        format_ok=bool(traj.reward.format_ok),
        tool_calls=traj.tool_calls,
        tool_failures=traj.tool_failures,
        model_tokens=traj.n_model_tokens,
        response_tokens=len(traj.response_ids),
        needs=_needs(traj.example),
    )


def to_records(items: Iterable[Trajectory | Mapping[str, Any]]) -> list[SampleRecord]:
    """Records for trajectories or their dict rows (mixed is fine)."""
    return [record_from_trajectory(t) if isinstance(t, Trajectory) else record_from_dict(t) for t in items]
