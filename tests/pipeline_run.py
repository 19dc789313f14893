"""A main-job run directory as the pipeline leaves it, written from hand-built trajectories: the results and
report tests read it the way they read a real run.

40 TAPO-mini-like test questions (8 of each kind, with ``meta.kind``, ``meta.needs`` and an oracle ``plan``):
the starting model gets none right and writes only corrective-message turns, the warm start gets 9 right and
TAPO 14 (+12.5 points: the gain `summary.md` once ticked as a met goal). A TAPO training run logs two RL steps
with their sampled-group intervals and some trajectories, as the trainer does.
"""

from __future__ import annotations

from pathlib import Path

from tapo.data.mini.oracle_plan import CodeStep, OraclePlan, PlanStep, SearchStep
from tapo.data.schema import Example
from tapo.eval.metrics import accuracy_by_searches, compute_metrics
from tapo.eval.result_dir import EvalResult
from tapo.eval.samples import to_records
from tapo.io.atomic import write_jsonl
from tapo.pipeline.arms import BASE, SFT, TAPO, save_arms
from tapo.pipeline.summary import KINDS, write_results
from tapo.protocol import INVALID, TOOL_NAMES, corrective_message, format_observation
from tapo.records import RewardBreakdown, Trajectory, Turn

QUESTIONS = 40
RIGHT = {"base": 0, "sft": 9, "tapo": 14}
TITLES = {arm.name: arm.title for arm in (BASE, SFT, TAPO)}
ARMS = [TAPO]
NEEDS = {"single_hop": ["search"], "multi_hop": ["search"], "code": ["code"], "search_code": ["search", "code"]}
CORRECTIVE = corrective_message(frozenset(TOOL_NAMES))


def plan_step(tool: str, i: int) -> PlanStep:
    """A step of question ``i``'s oracle plan calling ``tool``."""
    if tool == "search":
        return SearchStep(query=f"Entity {i}", attribute="founded", fact=f"the founding year of Entity {i}", value="1")
    return CodeStep(code=f"print({i})", output=str(i))


def question(i: int) -> Example:
    kind = KINDS[i % len(KINDS)]
    needs = NEEDS.get(kind, [])
    plan = OraclePlan(tuple(plan_step(tool, i) for tool in needs))
    return Example(
        id=f"t{i}",
        question=f"Question {i} ({kind})",
        data_source="tapo_mini",
        golds=[str(i)],
        meta={"kind": kind, "needs": needs, "plan": plan.to_meta(), "answer": str(i)},
    )


def tool_trajectory(example: Example, right: bool) -> Trajectory:
    """<think>, a call of each needed tool with its output inserted, then the answer."""
    text, turns = "<think> plan </think>", []
    for tool in example.meta["needs"]:
        call, output = f"{tool} for {example.id}", f"result of {tool}"
        text += f"<{tool}> {call} </{tool}>" + format_observation(output)
        turns.append(Turn(tool, call, output))
    answer = example.golds[0] if right else "wrong"
    text += f"<answer> {answer} </answer>"
    turns.append(Turn("answer", answer))
    return scored_trajectory(example, text, turns, right, "answer")


def corrective_trajectory(example: Example) -> Trajectory:
    """Two turns without a valid action: the environment's corrective message after each (it quotes the tags)."""
    text = "I am not sure" + CORRECTIVE + "\n\n\n" + CORRECTIVE
    turns = [Turn(INVALID, "I am not sure", CORRECTIVE, ok=False, error="no valid action")]
    turns.append(Turn(INVALID, "\n\n\n", CORRECTIVE, ok=False, error="no valid action"))
    return scored_trajectory(example, text, turns, False, "length")


def scored_trajectory(example: Example, text: str, turns: list[Turn], right: bool, finish: str) -> Trajectory:
    """A scored trajectory of ``example`` whose response is ``text`` and whose typed turns are ``turns``."""
    score = 1.0 if right else 0.0
    return Trajectory(
        prompt_ids=[1],
        response_ids=list(range(20)),
        model_mask=[1] * 15 + [0] * 5,
        turns=turns,
        response_text=text,
        finish_reason=finish,
        example=example,
        reward=RewardBreakdown(
            format_ok=finish == "answer", score=score, penalty=0.0, total=score, acc=right, answer=turns[-1].content
        ),
    )


def eval_result(
    trajectories: list[Trajectory],
    model: str = "tiny",
    tools_mode: str = "all",
    data: str = "set.jsonl",
    template: str = "base",
) -> EvalResult:
    """What ``tapo eval`` saves for these trajectories (greedy, one sample per question)."""
    records = to_records(trajectories)
    return EvalResult(
        model=model, data=data, tools_mode=tools_mode, template=template, samples=1, greedy=True,
        metrics=compute_metrics(records), accuracy_by_searches=accuracy_by_searches(records),
        trajectories=trajectories,
    )  # fmt: skip


def evaluation(name: str) -> list[Trajectory]:
    if name == "base":
        return [corrective_trajectory(question(i)) for i in range(QUESTIONS)]
    return [tool_trajectory(question(i), i < RIGHT[name]) for i in range(QUESTIONS)]


def build_pipeline_run(root: Path) -> Path:
    """Write the run under ``root`` (evaluations, a TAPO training run, arms.json, summary.md/json); returns
    ``root``."""
    for name in RIGHT:
        eval_result(evaluation(name), name, data="data/test.jsonl", template="minimal").save(root / "eval" / name)
    steps = [
        {"step": 1.0, "reward/acc": 0.5, "tools/calls_per_traj": 1.0, "batch/trajectories": 24.0}
        | {"sampled/acc": 0.25, "sampled/acc_ci_lo": 0.1, "sampled/acc_ci_hi": 0.45}
        | {"sampling/informative_frac": 0.5, "sampling/informative_frac/single_hop": 0.25}
        | {"sampled/calls_per_question": 1.0, "sampled/calls_per_question_ci_lo": 0.7}
        | {"sampled/calls_per_question_ci_hi": 1.3, "sampled/prompts": 6.0},
        {"step": 2.0, "reward/acc": 0.5, "tools/calls_per_traj": 1.2, "batch/trajectories": 24.0}
        | {"sampled/acc": 0.4, "sampled/acc_ci_lo": 0.2, "sampled/acc_ci_hi": 0.6}
        | {"sampling/informative_frac": 0.75, "sampling/informative_frac/single_hop": 0.5}
        | {"sampled/calls_per_question": 1.2, "sampled/calls_per_question_ci_lo": 0.9}
        | {"sampled/calls_per_question_ci_hi": 1.5, "sampled/prompts": 6.0},
    ]
    write_jsonl(root / "tapo" / "metrics.jsonl", steps)
    logged = [tool_trajectory(question(i), i % 2 == 0) for i in range(4)] + [corrective_trajectory(question(5))]
    write_jsonl(root / "tapo" / "trajectories.jsonl", [t.to_row(step=1 + i % 2) for i, t in enumerate(logged)])
    save_arms(root, ARMS)
    write_results(root, ARMS)
    return root
