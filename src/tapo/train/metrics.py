"""Per-step metrics of a batch of trajectories: reward, accuracy, format errors, tool use, lengths.

Kept apart from the loop so the SFT warm start, evaluation and tests can compute the same numbers.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from tapo.protocol import TOOL_NAMES
from tapo.records import Trajectory


def rollout_metrics(trajs: Sequence[Trajectory]) -> dict[str, float]:
    """Means over the trajectories; an unscored trajectory is an error (:attr:`Trajectory.scored`)."""
    if not trajs:
        return {}
    rewards = [t.scored for t in trajs]
    totals = [r.total for r in rewards]
    n = len(trajs)
    calls = sum(sum(t.tool_calls.values()) for t in trajs)
    row: dict[str, float] = {
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
    for tool in TOOL_NAMES:
        row[f"tools/{tool}_per_traj"] = sum(t.tool_calls.get(tool, 0) for t in trajs) / n
    return row
