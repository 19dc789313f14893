"""A flat view of one scored trajectory: the only fields evaluation metrics and plots look at.

Metrics run on live ``Trajectory`` objects (right after an evaluation) and on trajectories read back from a
``trajectories.jsonl`` (a training run, an older evaluation) through :meth:`Trajectory.from_row`: one row
schema, one path. Reducing each to a record keeps the metric code a set of pure functions over plain data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tapo.data.mini.oracle_plan import OraclePlan
from tapo.protocol import is_tool_action
from tapo.records import RecordError, Trajectory


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
    kind: str | None = None  # the question's kind (TAPO-mini ``meta.kind``: single_hop, code, ...); None = unknown
    tool_sequence: tuple[str, ...] = ()  # the tools called, in order
    plan: tuple[str, ...] | None = None  # the tools of the question's oracle plan (``meta.plan``), in order

    @property
    def n_calls(self) -> int:
        return sum(self.tool_calls.values())

    @property
    def follows_plan(self) -> bool | None:
        """Whether the tools were called exactly as the oracle plan calls them (same tools, same order); None
        without a plan. It separates "called the wrong tool" from "called the right tools and misread"."""
        return None if self.plan is None else self.tool_sequence == self.plan


def _needs(meta: Mapping[str, object]) -> tuple[str, ...] | None:
    needs = meta.get("needs")
    if needs is None:
        return None
    if isinstance(needs, str):
        needs = [needs]
    return tuple(sorted(str(n) for n in needs))  # type: ignore[union-attr]


def record_from_trajectory(traj: Trajectory) -> SampleRecord:
    """The record of a scored trajectory of a question (no reward or no example is an error)."""
    reward = traj.scored
    if traj.example is None:
        raise RecordError("trajectory has no example: metrics group answers by question and data source")
    return SampleRecord(
        question_id=traj.example.id,
        data_source=traj.example.data_source,
        acc=bool(reward.acc),
        score=float(reward.score),
        total=float(reward.total),
        format_ok=bool(reward.format_ok),
        tool_calls=traj.tool_calls,
        tool_failures=traj.tool_failures,
        model_tokens=traj.n_model_tokens,
        response_tokens=len(traj.response_ids),
        needs=_needs(traj.example.meta),
        kind=str(traj.example.meta["kind"]) if "kind" in traj.example.meta else None,
        tool_sequence=tuple(turn.action for turn in traj.turns if is_tool_action(turn.action)),
        plan=plan.tools if (plan := OraclePlan.of(traj.example)) else None,
    )


def to_records(trajectories: Iterable[Trajectory]) -> list[SampleRecord]:
    return [record_from_trajectory(t) for t in trajectories]
