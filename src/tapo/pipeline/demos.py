"""Protocol demonstrations for the supervised warm start, made by replaying oracle plans through the real rollout.

SmolLM2-135M does not follow the tag protocol zero-shot, so TAPO RL starts from a short supervised warm start.
Its demonstrations are produced by the same code path as RL trajectories: a ``ScriptedEngine`` writes the
model's part of each turn from the question's oracle plan (``meta.plan`` of TAPO-mini rows), and the real
rollout loop calls the real tools and inserts their outputs with loss mask 0. A demonstration is kept only when
every search actually surfaced the fact it was meant to find and the final answer is scored correct, so the warm
start never teaches the model to ignore what its tools said.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tapo.config.schema import RolloutConfig
from tapo.data.mini.oracle_plan import CodeStep, OraclePlan, SearchStep
from tapo.data.schema import Example
from tapo.engines.scripted import Script, ScriptedEngine
from tapo.io.event_loop import EventLoopThread
from tapo.prompts.templates import allowed_tools, render_prompt
from tapo.records import Trajectory
from tapo.rewards.compute import RewardFunction
from tapo.rollout.agent_loop import RolloutRunner
from tapo.tools.registry import ToolRegistry

DemoStats = dict[str, int]


def _said(fact: str, value: str) -> str:
    """A found fact as a sentence, e.g. 'The birth year of Ann Lee is 1839. '."""
    return f"{fact[0].upper()}{fact[1:]} is {value}. "


def _uses(code: str, value: str) -> bool:
    """Whether a program has ``value`` as a whole word (1839 in ``2024 - 1839``, not 18 in it)."""
    return re.search(rf"(?<![\w.]){re.escape(value)}(?![\w.])", code) is not None


def _plan(example: Example) -> OraclePlan:
    """The question's oracle plan; an empty one for a question without a plan (answered directly)."""
    return OraclePlan.of(example) or OraclePlan()


def plan_turns(example: Example, allowed: frozenset[str]) -> list[str] | None:
    """The model's text for each turn of an oracle plan; None when the plan needs a tool the template lacks.

    Each turn first says what the last tool answered, then what it needs next, as a short ``<think>``. A plan that
    ends in a computation says so in its first thought, and its code turn starts with "Now I compute", so the step
    where it parts from a search-then-answer plan is decided from the question and the model's own plan, not after
    the found fact (where a warm start, seeing search-then-answer more often, answers with the fact). The code turn
    then restates every found value its program uses, so the numbers it copies stand right before it.
    """
    plan = _plan(example).steps
    if any(step.tool not in allowed for step in plan):
        return None
    computes = ", then I compute the answer with Python" if plan and isinstance(plan[-1], CodeStep) else ""
    turns: list[str] = []
    found: list[SearchStep] = []  # the search steps done so far
    known = ""
    for step in plan:
        if isinstance(step, SearchStep):
            need = f"I need {step.fact}{'' if found else computes}."
            turns.append(f"<think> {known}{need} </think>\n<search> {step.query} </search>")
            found.append(step)
            known = _said(step.fact, step.value)
        else:
            used = "".join(_said(s.fact, s.value) for s in found if _uses(step.code, s.value))
            now = "Now I compute" if found else "I compute"
            turns.append(f"<think> {now} the answer with Python. {used}</think>\n<code>\n{step.code}\n</code>")
            known = f"The result is {step.output}. "
    reasoning = known or "I know this without tools. "
    turns.append(f"<think> {reasoning}</think>\n<answer> {example.meta.get('answer', example.golds[0])} </answer>")
    return turns


def followed_plan(trajectory: Trajectory, example: Example) -> bool:
    """Whether every planned call ran and the answer came, in order. A turn cut by ``max_new_tokens_per_turn`` gets a
    corrective message instead of its call, and the scripted answer may still be right, so an answer alone does not
    show that the plan fitted the caps."""
    planned = list(_plan(example).tools)
    return trajectory.finish_reason == "answer" and [turn.action for turn in trajectory.turns] == [*planned, "answer"]


def _searches_found_their_facts(trajectory: Trajectory, example: Example) -> bool:
    searches = _plan(example).searches
    outputs = [turn.output for turn in trajectory.turns if turn.action == "search"]
    return len(outputs) == len(searches) and all(
        step.value in output for step, output in zip(searches, outputs, strict=True)
    )


def _script_by_prompt(prompts: list[list[int]], turn_lists: list[list[str]]) -> Script:
    """A script that finds each conversation's plan by the prompt its context starts with."""
    by_prompt = {tuple(p): turns for p, turns in zip(prompts, turn_lists, strict=True)}
    lengths = sorted({len(p) for p in prompts})

    def script(context: list[int], turn: int) -> str:
        for n in lengths:
            turns = by_prompt.get(tuple(context[:n]))
            if turns is not None:
                return turns[turn] if turn < len(turns) else ""
        raise KeyError("a context that no demonstration prompt starts")

    return script


@dataclass
class DemoBuilder:
    """Replays oracle plans in batches through the real tools, with a scripted engine per batch; every batch runs
    on ``loop``, the event loop the tools' clients live on (close the tools there)."""

    tokenizer: Any
    tools: ToolRegistry
    rollout: RolloutConfig
    reward: RewardFunction
    template: str
    batch_size: int = 64
    loop: EventLoopThread = field(default_factory=EventLoopThread)

    def _batches(self, examples: list[Example]) -> Iterator[list[Example]]:
        for start in range(0, len(examples), self.batch_size):
            yield examples[start : start + self.batch_size]

    def build(self, examples: list[Example], stats: DemoStats) -> list[Trajectory]:
        allowed = allowed_tools(self.template)
        kept: list[Trajectory] = []
        for batch in self._batches(examples):
            scripted = [(ex, plan_turns(ex, allowed)) for ex in batch]
            stats["no_plan"] = stats.get("no_plan", 0) + sum(turns is None for _, turns in scripted)
            ready = [(ex, turns) for ex, turns in scripted if turns is not None]
            if not ready:
                continue
            prompts = [render_prompt(self.tokenizer, ex.question, self.template) for ex, _ in ready]
            script = _script_by_prompt(prompts, [turns for _, turns in ready])
            runner = RolloutRunner(ScriptedEngine(self.tokenizer, script), self.tools, self.rollout, loop=self.loop)
            trajectories = runner.run(prompts, [ex for ex, _ in ready], runner.sampling_params(greedy=True), allowed)
            self.reward.score_trajectories(trajectories)
            for trajectory, (example, _) in zip(trajectories, ready, strict=True):
                if not followed_plan(trajectory, example):
                    # Cut by the rollout's token or turn caps: the plan does not fit the RL budget.
                    stats["over_budget"] = stats.get("over_budget", 0) + 1
                elif not trajectory.scored.acc:
                    stats["wrong_answer"] = stats.get("wrong_answer", 0) + 1
                elif not _searches_found_their_facts(trajectory, example):
                    stats["fact_not_found"] = stats.get("fact_not_found", 0) + 1
                else:
                    kept.append(trajectory)
        stats["kept"] = len(kept)
        return kept
