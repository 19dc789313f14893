"""Oracle plans replayed through the real rollout: the model's text of each turn is written from the question's
TAPO-mini plan (``meta.plan``), a :class:`ScriptedEngine` emits it token by token, and the real loop calls the real
tools and inserts their outputs (mask 0), so a replayed trajectory has the token ids, ``model_mask`` and tool
outputs a sampled one would have.

Two users: the supervised warm start's demonstrations (:mod:`tapo.pipeline.demos`) and the trainer's guidance,
which puts such an expert trajectory into a group where the policy never succeeded (:mod:`tapo.train.guidance`).
Both keep a replay only when :func:`unusable` finds nothing wrong with it, so neither ever teaches an answer its
tools did not support.
"""

from __future__ import annotations

import re
from typing import Any

from tapo.config.schema import RolloutConfig
from tapo.data.mini.oracle_plan import CodeStep, OraclePlan, SearchStep
from tapo.data.schema import Example
from tapo.engines.scripted import Script, ScriptedEngine
from tapo.io.event_loop import EventLoopThread
from tapo.protocol import TAPO, Protocol
from tapo.records import Trajectory
from tapo.rollout.agent_loop import RolloutRunner
from tapo.tools.registry import ToolRegistry


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


def unusable(trajectory: Trajectory, example: Example) -> str | None:
    """Why a scored replay must not be learnt from, or None when it may: ``over_budget`` (cut by the rollout's token
    or turn caps: the plan does not fit the budget), ``wrong_answer``, or ``fact_not_found`` (a search did not
    surface the fact it was meant to find)."""
    if not followed_plan(trajectory, example):
        return "over_budget"
    if not trajectory.scored.acc:
        return "wrong_answer"
    if not _searches_found_their_facts(trajectory, example):
        return "fact_not_found"
    return None


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


def replay_plans(
    tokenizer: Any,
    tools: ToolRegistry | None,
    rollout: RolloutConfig,
    loop: EventLoopThread,
    prompts: list[list[int]],
    examples: list[Example],
    turns: list[list[str]],
    allowed: frozenset[str],
    protocol: Protocol = TAPO,
) -> list[Trajectory]:
    """One unscored trajectory per prompt, its model turns ``turns`` of :func:`plan_turns`, its tool outputs real;
    marked ``origin="expert"`` (not sampled by the policy: its tokens have probability 1 under the script)."""
    script = _script_by_prompt(prompts, turns)
    runner = RolloutRunner(ScriptedEngine(tokenizer, script), tools, rollout, loop=loop, protocol=protocol)
    trajectories = runner.run(prompts, list(examples), runner.sampling_params(greedy=True), allowed)
    for trajectory in trajectories:
        trajectory.origin = "expert"
    return trajectories
