"""Evaluation metrics: pure functions over scored sample records, per data source and overall.

Averaging rule: every per-sample quantity is first averaged over a question's K samples, then over
questions, so a question weighs the same whatever its number of samples (with equal K this is the plain
mean over samples). Tool failure rate is pooled over calls instead: it describes the tools, not questions.
Accuracy carries its 95 % interval over questions (:func:`tapo.stats.share_interval`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from math import comb
from statistics import fmean
from typing import Any

from tapo.eval.samples import SampleRecord
from tapo.protocol import TOOL_NAMES
from tapo.stats import Interval, mean_interval, share_interval

OVERALL = "overall"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): chance that k of n samples, c of them correct, hold a correct one."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


@dataclass(frozen=True)
class AdaptiveStats:
    """Whether the model calls tools when the question needs them, and refrains when it does not.

    ``call_rate_*`` is the share of questions (K-averaged) whose answer made at least one tool call;
    ``needed_tools_rate`` is the share of tool-needing questions that called every tool they need.
    """

    questions_needing_tools: int
    questions_without_need: int
    call_rate_when_needed: float | None
    call_rate_when_not_needed: float | None
    needed_tools_rate: float | None


@dataclass(frozen=True)
class SourceMetrics:
    source: str
    questions: int
    samples: int
    k: int
    acc: float
    pass_at_k: float
    mean_score: float
    mean_reward: float
    format_error_rate: float
    tool_calls_mean: dict[str, float]
    tool_calls_distribution: dict[str, dict[int, int]]
    tool_use_share: dict[str, float]
    tool_calls_total: int
    tool_failure_rate: float | None
    model_tokens_mean: float
    response_tokens_mean: float
    adaptive: AdaptiveStats | None = None
    acc_interval: Interval | None = None  # None only in results.json files written before intervals existed
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        # JSON object keys are strings; keep the histogram keys numeric-looking and sorted.
        row["tool_calls_distribution"] = {
            tool: {str(n): c for n, c in sorted(hist.items())} for tool, hist in self.tool_calls_distribution.items()
        }
        return row


def _by_question(records: Sequence[SampleRecord]) -> list[list[SampleRecord]]:
    groups: dict[tuple[str, str], list[SampleRecord]] = defaultdict(list)
    for record in records:
        groups[(record.data_source, record.question_id)].append(record)
    return list(groups.values())


def per_question(records: Sequence[SampleRecord], value) -> dict[tuple[str, str], float]:
    """``value`` averaged over each question's samples, keyed by (data source, question id): what paired
    comparisons of two models match on."""
    return {(g[0].data_source, g[0].question_id): fmean(float(value(r)) for r in g) for g in _by_question(records)}


def question_values(groups: Sequence[Sequence[SampleRecord]], value) -> list[float]:
    """One number per question: ``value`` averaged over the question's samples."""
    return [fmean(float(value(r)) for r in group) for group in groups]


def _question_mean(groups: Sequence[Sequence[SampleRecord]], value) -> float:
    return fmean(question_values(groups, value))


def tool_names(records: Iterable[SampleRecord]) -> list[str]:
    """The known tools first (search, code), then any other tool seen, so tables have stable columns."""
    seen = {tool for r in records for tool in r.tool_calls}
    return list(TOOL_NAMES) + sorted(seen - set(TOOL_NAMES))


def adaptive_stats(groups: Sequence[Sequence[SampleRecord]]) -> AdaptiveStats | None:
    """Adaptive tool use over questions whose ``meta.needs`` is known; None when no question has it."""
    known = [g for g in groups if g[0].needs is not None]
    if not known:
        return None
    needing = [g for g in known if g[0].needs]
    without = [g for g in known if not g[0].needs]

    def rate(gs: list[Sequence[SampleRecord]], hit) -> float | None:
        return _question_mean(gs, hit) if gs else None

    return AdaptiveStats(
        questions_needing_tools=len(needing),
        questions_without_need=len(without),
        call_rate_when_needed=rate(needing, lambda r: r.n_calls > 0),
        call_rate_when_not_needed=rate(without, lambda r: r.n_calls > 0),
        needed_tools_rate=rate(needing, lambda r: all(r.tool_calls.get(t, 0) > 0 for t in r.needs or ())),
    )


def source_metrics(source: str, records: Sequence[SampleRecord], tools: Sequence[str] | None = None) -> SourceMetrics:
    """All metrics of one slice of records (one data source, or all of them)."""
    if not records:
        raise ValueError(f"no scored samples for {source!r}")
    tools = list(tools or tool_names(records))
    groups = _by_question(records)
    k = min(len(g) for g in groups)
    calls_total = sum(r.n_calls for r in records)
    failures = sum(r.tool_failures for r in records)
    return SourceMetrics(
        source=source,
        questions=len(groups),
        samples=len(records),
        k=k,
        acc=_question_mean(groups, lambda r: r.acc),
        acc_interval=share_interval(question_values(groups, lambda r: r.acc)),
        pass_at_k=fmean(pass_at_k(len(g), sum(r.acc for r in g), k) for g in groups),
        mean_score=_question_mean(groups, lambda r: r.score),
        mean_reward=_question_mean(groups, lambda r: r.total),
        format_error_rate=_question_mean(groups, lambda r: not r.format_ok),
        tool_calls_mean={t: _question_mean(groups, lambda r, t=t: r.tool_calls.get(t, 0)) for t in tools},
        tool_calls_distribution={
            t: dict(sorted(Counter(r.tool_calls.get(t, 0) for r in records).items())) for t in tools
        },
        tool_use_share={t: _question_mean(groups, lambda r, t=t: r.tool_calls.get(t, 0) > 0) for t in tools},
        tool_calls_total=calls_total,
        tool_failure_rate=failures / calls_total if calls_total else None,
        model_tokens_mean=_question_mean(groups, lambda r: r.model_tokens),
        response_tokens_mean=_question_mean(groups, lambda r: r.response_tokens),
        adaptive=adaptive_stats(groups),
    )


def compute_metrics(records: Sequence[SampleRecord]) -> dict[str, SourceMetrics]:
    """Metrics per data source (sorted) and ``overall`` (last), all with the same tool columns."""
    tools = tool_names(records)
    by_source: dict[str, list[SampleRecord]] = defaultdict(list)
    for record in records:
        by_source[record.data_source].append(record)
    result = {source: source_metrics(source, by_source[source], tools) for source in sorted(by_source)}
    result[OVERALL] = source_metrics(OVERALL, records, tools)
    return result


def accuracy_by_searches(records: Iterable[SampleRecord]) -> dict[int, tuple[float, int]]:
    """Sample accuracy against the number of searches the sample made: ``{n_searches: (acc, n_samples)}``."""
    buckets: dict[int, list[bool]] = defaultdict(list)
    for record in records:
        buckets[record.tool_calls.get("search", 0)].append(record.acc)
    return {n: (fmean(accs), len(accs)) for n, accs in sorted(buckets.items())}


def calls_by_kind(records: Sequence[SampleRecord]) -> dict[str, Interval]:
    """Tool calls per question (K-averaged) by question kind (TAPO-mini ``meta.kind``), each with its 95 %
    interval; empty when no question has a kind."""
    groups: dict[str, list[list[SampleRecord]]] = defaultdict(list)
    for group in _by_question(records):
        if group[0].kind is not None:
            groups[group[0].kind].append(group)
    return {kind: mean_interval(question_values(gs, lambda r: r.n_calls)) for kind, gs in sorted(groups.items())}


def metrics_from_dict(row: dict[str, Any]) -> SourceMetrics:
    """Inverse of ``SourceMetrics.to_dict`` (for reports built from saved ``results.json`` files)."""
    row = dict(row)
    row["adaptive"] = AdaptiveStats(**row["adaptive"]) if row.get("adaptive") else None
    row["acc_interval"] = Interval.from_dict(row["acc_interval"]) if row.get("acc_interval") else None
    row["tool_calls_distribution"] = {
        tool: {int(n): int(c) for n, c in hist.items()} for tool, hist in row["tool_calls_distribution"].items()
    }
    return SourceMetrics(**row)
