"""Per-step metrics of a batch of trajectories: reward, accuracy, format errors, tool use, lengths.

Kept apart from the loop so the SFT warm start, evaluation and tests can compute the same numbers.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from tapo.rollout.trajectory import Trajectory

TOOLS = ("search", "code")


def rollout_metrics(trajs: Sequence[Trajectory]) -> dict[str, float]:
    """Means over the trajectories (rewards must have been scored)."""
    if not trajs:
        return {}
    totals = [t.reward.total if t.reward else 0.0 for t in trajs]
    n = len(trajs)
    calls = sum(sum(t.tool_calls.values()) for t in trajs)
    row: dict[str, float] = {
        "reward/mean": statistics.fmean(totals),
        "reward/std": statistics.pstdev(totals),
        "reward/acc": sum(bool(t.reward and t.reward.acc) for t in trajs) / n,
        "reward/format_error_rate": sum(not (t.reward and t.reward.format_ok) for t in trajs) / n,
        "tools/calls_per_traj": calls / n,
        "tools/failure_rate": sum(t.tool_failures for t in trajs) / calls if calls else 0.0,
        "tools/latency_s": sum(turn.latency_s for t in trajs for turn in t.turns),
        "response/model_tokens": statistics.fmean(t.n_model_tokens for t in trajs),
        "response/total_tokens": statistics.fmean(len(t.response_ids) for t in trajs),
        "response/truncated_rate": sum(t.finish_reason == "length" for t in trajs) / n,
    }
    for tool in TOOLS:
        row[f"tools/{tool}_per_traj"] = sum(t.tool_calls.get(tool, 0) for t in trajs) / n
    return row


def trajectory_row(step: int, traj: Trajectory) -> dict[str, object]:
    """What trajectories.jsonl keeps of one sampled trajectory: readable, not the raw id lists."""
    return {
        "step": step,
        "question": traj.example.get("question"),
        "golds": traj.example.get("golds"),
        "response": traj.response_text,
        "reward": traj.reward.to_dict() if traj.reward else None,
        "tool_calls": traj.tool_calls,
        "model_tokens": traj.n_model_tokens,
        "finish_reason": traj.finish_reason,
    }
