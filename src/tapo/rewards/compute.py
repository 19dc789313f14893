"""The reward function the trainer and the evaluator call: format check, scorer by source, overlong shaping and
the optional tool cost.

It scores text; a :class:`~tapo.records.Trajectory` is only the record it reads the text, golds and token
count from (rewards never import the rollout that made it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from tapo.config.schema import RewardConfig
from tapo.protocol import TAPO, Protocol, last_answer
from tapo.records import RewardBreakdown, Trajectory
from tapo.rewards.format_check import check_format
from tapo.rewards.registry import RewardError, ScorerRegistry
from tapo.rewards.scorers import best_score
from tapo.rewards.shaping import FORM_DEFAULTS, grpo_tool_reward, overlong_penalty, ppo_tool_reward, tool_cost


class RewardFunction:
    """``reward(response_text, golds, data_source, n_model_tokens, tool_calls) -> RewardBreakdown``.

    A broken format scores ``config.format_penalty`` (−1) with acc False; otherwise the source's scorer gives
    the best score over the golds and ``acc = score > acc_threshold``. The overlong penalty is added in both
    cases; when ``reward.tool_cost`` is on a right answer's total also carries the tool term (``tool_bonus``:
    a bonus under ``form: additive``, ``alpha * r_tool * score - score`` under ``otc``; 0 otherwise): total =
    score + penalty + tool_bonus. Call :meth:`close` (or use ``with``) to stop the math worker process.
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

    def with_tool_cost(self, base: RewardBreakdown, tool_calls: int, optimal_calls: int) -> RewardBreakdown:
        """``base`` (no tool term) with ``reward.tool_cost``'s term for ``tool_calls`` calls, where ``optimal_calls``
        is OTC-GRPO's n (read only under ``optimal_calls: group``). Only a right answer is changed, so the term never
        pays for a cheap wrong one."""
        cost = self.config.tool_cost
        if not (cost.enabled and base.acc):
            return base
        weight, half_calls = FORM_DEFAULTS[cost.form]
        weight = weight if cost.weight is None else cost.weight
        half_calls = half_calls if cost.half_calls is None else cost.half_calls
        if cost.optimal_calls == "group":
            r_tool = grpo_tool_reward(tool_calls, optimal_calls, half_calls)
        else:
            r_tool = ppo_tool_reward(tool_calls, half_calls)
        term = tool_cost(base.score, base.acc, r_tool, cost.form, weight)
        return dataclasses.replace(base, total=base.total + term, tool_bonus=term)

    def __call__(
        self,
        response_text: str,
        golds: Sequence[str],
        data_source: str,
        n_model_tokens: int,
        tool_calls: int = 0,
        optimal_calls: int | None = None,
    ) -> RewardBreakdown:
        """The reward of one response; ``optimal_calls`` is OTC-GRPO's n, the fewest calls among the right answers
        to the same prompt (None: this answer alone is the group, see :meth:`score_trajectories`)."""
        base = self.base(response_text, golds, data_source, n_model_tokens)
        return self.with_tool_cost(base, tool_calls, tool_calls if optimal_calls is None else optimal_calls)

    def base(self, response_text: str, golds: Sequence[str], data_source: str, n_model_tokens: int) -> RewardBreakdown:
        """Format, score and overlong penalty: the reward before any tool term."""
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
        return RewardBreakdown(True, score, penalty, score + penalty, acc, verdict.answer, scorer_name)

    def score_trajectories(self, trajs: list[Trajectory]) -> None:
        """Set ``traj.reward`` from its graded text (no corrective messages), golds, data_source, model tokens and
        tool calls (the calls the rollout ran: a tool tag it refused is no call).

        The trajectories of one prompt (one example id) are its group: OTC-GRPO's n is the fewest calls among the
        group's right answers (0 where none is right; then no answer is paid anyway).
        """
        scored = []  # (prompt, base, calls) per trajectory
        for traj in trajs:
            if traj.example is None:
                raise RewardError("trajectory has no example: its golds and data_source are needed to score it")
            example = traj.example
            base = self.base(traj.graded_text, example.golds, example.data_source, traj.n_model_tokens)
            scored.append((example.id, base, sum(traj.tool_calls.values())))
        fewest: dict[str, int] = {}
        for prompt, base, calls in scored:
            if base.acc:
                fewest[prompt] = min(fewest.get(prompt, calls), calls)
        for traj, (prompt, base, calls) in zip(trajs, scored, strict=True):
            traj.reward = self.with_tool_cost(base, calls, fewest.get(prompt, 0))

    def check_sources(self, data_sources: Iterable[str]) -> None:
        """Fail before a run starts when a data source has no scorer."""
        self.registry.check_sources(data_sources)

    def close(self) -> None:
        self.registry.close()

    def __enter__(self) -> RewardFunction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
