"""One evaluated model of the main job, per question: what the summary's tables, comparisons and goals are computed
from (:mod:`tapo.pipeline.summary`, :mod:`tapo.pipeline.seeds`). The unit of every interval is the question."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from tapo.eval.metrics import per_question
from tapo.eval.result_dir import load_trajectories
from tapo.eval.samples import SampleRecord, to_records
from tapo.stats import Interval, mean_interval, paired_difference, share_interval

Key = tuple[str, str]  # (data source, question id)


@dataclass(frozen=True)
class ModelResults:
    """One evaluated model: per-question values (K-averaged) keyed by question, and each question's kind."""

    name: str
    title: str
    acc: dict[Key, float]
    called: dict[Key, float]  # got at least one tool call
    calls: dict[Key, float]
    kind: dict[Key, str]
    needs_tool: dict[Key, bool]
    calls_needed: dict[Key, int]  # tool steps of the question's oracle plan
    followed_plan: dict[Key, float]  # called the oracle plan's tools in its order (questions with a plan)
    format_error_rate: float

    def share(self, values: dict[Key, float], keys: Sequence[Key] | None = None) -> Interval | None:
        """A share of (the given) questions with its interval; None when there is no such question."""
        chosen = list(values) if keys is None else list(keys)
        return share_interval([values[k] for k in chosen]) if chosen else None

    def calls_per_question(self) -> Interval:
        return mean_interval(list(self.calls.values()))

    def by_kind(self, values: dict[Key, float]) -> dict[str, Interval]:
        """A share of each kind's questions (those ``values`` covers) with its interval."""
        keys: dict[str, list[Key]] = defaultdict(list)
        for key, kind in self.kind.items():
            if key in values:
                keys[kind].append(key)
        return {kind: share_interval([values[k] for k in ks]) for kind, ks in keys.items()}

    def acc_by_kind(self) -> dict[str, Interval]:
        return self.by_kind(self.acc)

    def call_rate(self, needed: bool) -> Interval | None:
        return self.share(self.called, [k for k, need in self.needs_tool.items() if need == needed])


def load_model(name: str, title: str, eval_dir: Path) -> ModelResults:
    """Per-question numbers of one evaluation, from its trajectories (the unit of every interval)."""
    trajectories = load_trajectories(eval_dir)
    records: list[SampleRecord] = to_records(trajectories)
    meta = {(t.example.data_source, t.example.id): t.example.meta for t in trajectories if t.example}
    return ModelResults(
        name=name,
        title=title,
        acc=per_question(records, lambda r: r.acc),
        called=per_question(records, lambda r: r.n_calls > 0),
        calls=per_question(records, lambda r: r.n_calls),
        kind={k: str(m.get("kind", "?")) for k, m in meta.items()},
        needs_tool={k: bool(m["needs"]) for k, m in meta.items() if m.get("needs") is not None},
        calls_needed={(r.data_source, r.question_id): len(r.plan or ()) for r in records},
        followed_plan=per_question([r for r in records if r.plan is not None], lambda r: r.follows_plan),
        format_error_rate=fmean(not r.format_ok for r in records),
    )


def compare(a: ModelResults, b: ModelResults, value: Callable[[ModelResults], dict[Key, float]]) -> Interval | None:
    """Paired difference a − b of a per-question value over the questions both models answered."""
    va, vb = value(a), value(b)
    keys = sorted(set(va) & set(vb))
    return paired_difference([va[k] for k in keys], [vb[k] for k in keys]) if keys else None
