"""Per-step metrics of a batch of trajectories: reward, accuracy, format errors, tool use, lengths.

Pure functions of the trajectories, kept apart from the trainer so they can be tested on hand-built batches.
(Evaluation has its own metrics over scored samples, :mod:`tapo.eval.metrics`; the SFT warm start logs its loss.)

:func:`sampled_metrics` describes every group a step sampled, before dynamic sampling drops the groups with one
reward for all: the batch trained on is selected to be mixed, so its accuracy is not the policy's, while the
sampled groups' accuracy is (on training prompts). Its 95 % intervals are over the step's prompts
(:mod:`tapo.stats`), so the report can draw accuracy and tool calls per question over RL steps with a band.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from tapo.protocol import TOOL_NAMES
from tapo.records import Trajectory
from tapo.stats import Interval, mean_interval, share_interval


def rollout_metrics(trajs: Sequence[Trajectory]) -> dict[str, float]:
    """Means over the trajectories; an unscored trajectory is an error (:attr:`Trajectory.scored`). A
    ``tools/<name>_per_traj`` column for each of TAPO's tools, called or not, and for any other tool called."""
    if not trajs:
        return {}
    rewards = [t.scored for t in trajs]
    totals = [r.total for r in rewards]
    n = len(trajs)
    calls = sum(sum(t.tool_calls.values()) for t in trajs)
    row: dict[str, float] = {
        "batch/trajectories": float(n),
        "reward/mean": statistics.fmean(totals),
        "reward/std": statistics.pstdev(totals),
        "reward/acc": sum(r.acc for r in rewards) / n,
        "reward/tool_bonus": statistics.fmean(r.tool_bonus for r in rewards),
        "reward/format_error_rate": sum(not r.format_ok for r in rewards) / n,
        "tools/calls_per_traj": calls / n,
        "tools/failure_rate": sum(t.tool_failures for t in trajs) / calls if calls else 0.0,
        "tools/latency_s": sum(turn.latency_s for t in trajs for turn in t.turns),
        "response/model_tokens": statistics.fmean(t.n_model_tokens for t in trajs),
        "response/total_tokens": statistics.fmean(len(t.response_ids) for t in trajs),
        "response/truncated_rate": sum(t.finish_reason == "length" for t in trajs) / n,
    }
    called = {tool for t in trajs for tool in t.tool_calls}
    for tool in (*TOOL_NAMES, *sorted(called - set(TOOL_NAMES))):
        row[f"tools/{tool}_per_traj"] = sum(t.tool_calls.get(tool, 0) for t in trajs) / n
    return row


def _with_interval(key: str, interval: Interval) -> dict[str, float]:
    return {key: interval.estimate, f"{key}_ci_lo": interval.low, f"{key}_ci_hi": interval.high}


def sampled_metrics(groups: Sequence[Sequence[Trajectory]]) -> dict[str, float]:
    """Accuracy and tool calls per question over every sampled group (one group = one prompt's G answers).

    Each prompt's answers are averaged first, then the 95 % interval is taken over prompts (answers to one
    prompt are not independent draws); ``*_ci_lo``/``*_ci_hi`` hold the bounds.
    """
    groups = [g for g in groups if g]
    if not groups:
        return {}
    acc = [statistics.fmean(float(t.scored.acc) for t in g) for g in groups]  # [prompts]
    calls = [statistics.fmean(float(sum(t.tool_calls.values())) for t in g) for g in groups]  # [prompts]
    return {
        "sampled/prompts": float(len(groups)),
        "sampled/trajectories": float(sum(len(g) for g in groups)),
        **_with_interval("sampled/acc", share_interval(acc)),
        **_with_interval("sampled/calls_per_question", mean_interval(calls)),
    }
