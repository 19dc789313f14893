"""The reward function the trainer and the evaluator call: format check, scorer by source, overlong shaping and
the optional tool-cost bonus.

It scores text; a :class:`~tapo.records.Trajectory` is only the record it reads the text, golds and token
count from (rewards never import the rollout that made it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tapo.config.schema import RewardConfig
from tapo.protocol import TAPO, Protocol, last_answer
from tapo.records import RewardBreakdown, Trajectory
from tapo.rewards.format_check import check_format
from tapo.rewards.registry import RewardError, ScorerRegistry
from tapo.rewards.scorers import best_score
from tapo.rewards.shaping import overlong_penalty, tool_bonus


class RewardFunction:
    """``reward(response_text, golds, data_source, n_model_tokens, tool_calls) -> RewardBreakdown``.

    A broken format scores ``config.format_penalty`` (−1) with acc False; otherwise the source's scorer gives
    the best score over the golds and ``acc = score > acc_threshold``. The overlong penalty is added in both
    cases; a right answer also earns the tool-cost bonus when ``reward.tool_cost`` is on (0 otherwise): total =
    score + penalty + bonus. Call :meth:`close` (or use ``with``) to stop the math worker process.
    """

    def __init__(self, config: RewardConfig, max_response_tokens: int, protocol: Protocol = TAPO) -> None:
        overlong = config.overlong
        if overlong.enabled and overlong.buffer >= max_response_tokens:
            raise RewardError(
                f"reward.overlong.buffer={overlong.buffer} must be below rollout.max_response_tokens="
                f"{max_response_tokens} (or set reward.overlong.enabled=false)"
            )
        self.config = config
        self.max_response_tokens = max_response_tokens
        self.protocol = protocol  # the run's tags: a user's tool is a tag the format check allows
        self.registry = ScorerRegistry(config)

    def penalty(self, n_model_tokens: int) -> float:
        overlong = self.config.overlong
        if not overlong.enabled:
            return 0.0
        return overlong_penalty(n_model_tokens, self.max_response_tokens, overlong.buffer, overlong.factor)

    def bonus(self, acc: bool, tool_calls: int) -> float:
        """The tool-cost bonus: only a right answer earns it, so it never pays for a cheap wrong one."""
        cost = self.config.tool_cost
        if not (cost.enabled and acc):
            return 0.0
        return tool_bonus(tool_calls, cost.weight, cost.half_calls)

    def __call__(
        self, response_text: str, golds: Sequence[str], data_source: str, n_model_tokens: int, tool_calls: int = 0
    ) -> RewardBreakdown:
        scorer_name, scorer = self.registry.resolve(data_source)
        if isinstance(golds, str) or not golds:
            raise RewardError(f"golds must be a non-empty list of strings, got {golds!r}")
        penalty = self.penalty(n_model_tokens)
        verdict = check_format(response_text, self.protocol)
        if not verdict.ok or verdict.answer is None:
            score = self.config.format_penalty
            return RewardBreakdown(
                False,
                score,
                penalty,
                score + penalty,
                False,
                last_answer(response_text),
                scorer_name,
                verdict.reason,
            )
        score = best_score(scorer, verdict.answer, golds)
        acc = score > self.config.acc_threshold
        bonus = self.bonus(acc, tool_calls)
        return RewardBreakdown(
            True, score, penalty, score + penalty + bonus, acc, verdict.answer, scorer_name, tool_bonus=bonus
        )

    def score_trajectories(self, trajs: list[Trajectory]) -> None:
        """Set ``traj.reward`` from its graded text (no corrective messages), golds, data_source, model tokens and
        tool calls (the calls the rollout ran: a tool tag it refused is no call)."""
        for traj in trajs:
            if traj.example is None:
                raise RewardError("trajectory has no example: its golds and data_source are needed to score it")
            example = traj.example
            calls = sum(traj.tool_calls.values())
            traj.reward = self(traj.graded_text, example.golds, example.data_source, traj.n_model_tokens, calls)

    def check_sources(self, data_sources: Iterable[str]) -> None:
        """Fail before a run starts when a data source has no scorer."""
        self.registry.check_sources(data_sources)

    def close(self) -> None:
        self.registry.close()

    def __enter__(self) -> RewardFunction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
