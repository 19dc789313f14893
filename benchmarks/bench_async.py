"""The async rollout (one task per trajectory) against a turn-synchronous loop when tool calls take 0.2-2 s.

The turn-synchronous loop is the original Search-R1 implementation's, written below only for this comparison: every
active trajectory generates, then every tool call of that turn runs (concurrently) and the next turn waits for the
slowest one. The tool is a real ``Tool`` whose call sleeps a latency drawn from its input (both loops wait exactly as
long for the same call); a ``ScriptedEngine`` makes trajectory i search 1-3 times, then answer, so what is measured
is how each loop overlaps waiting, not generation. Loops interleaved over rounds (benchmarks/harness.py).

    python benchmarks/bench_async.py              # batches 8 32 64, 3 rounds
    python benchmarks/bench_async.py --quick      # batch 8 only
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from figures import figure_markdown
from harness import Figure, interleave
from recording import recorded
from rich.console import Console

from tapo.config.schema import RolloutConfig
from tapo.engines.base import SamplingParams
from tapo.protocol import STOP_STRINGS, format_observation, parse_action
from tapo.rollout.agent_loop import RolloutRunner
from tapo.tools.base import ToolResult
from tapo.tools.registry import ToolRegistry

QUESTIONS = [f"Tell a short story about the number {n}." for n in range(64)]
LOOPS = ["turn-synchronous loop", "async rollout (tapo)"]


class SleepTool:
    """A real tool whose call takes a latency drawn from [low, high] seconds (a search engine or sandbox stand-in
    for timing only: what is measured is how the loop overlaps waiting, not what the tool computes)."""

    def __init__(self, name: str, low: float, high: float, seed: int) -> None:
        self.name = name
        self.low, self.high = low, high
        self.seed = seed

    async def call(self, tool_input: str) -> ToolResult:
        # Drawn from the input, not from call order: both loops wait exactly as long for the same call.
        await asyncio.sleep(random.Random(f"{self.seed}:{tool_input}").uniform(self.low, self.high))
        return ToolResult(f"result for {tool_input}")

    async def aclose(self) -> None:
        """Nothing to release."""


def scripted_engine(tokenizer: Any, seed: int) -> Any:
    """Trajectory i makes 1-3 searches (fixed per question by ``seed``) and then answers."""
    from tapo.engines.scripted import ScriptedEngine

    rng = random.Random(seed)
    calls = {q: rng.randint(1, 3) for q in range(len(QUESTIONS))}

    def script(context: list[int], turn: int) -> str:
        question = next(q for q in range(len(QUESTIONS)) if QUESTIONS[q] in tokenizer.decode(context))
        return f"<search>query {question} {turn}</search>" if turn < calls[question] else "<answer>42</answer>"

    return ScriptedEngine(tokenizer, script)


async def turn_synchronous(engine: Any, tools: ToolRegistry, prompts: list[list[int]], config: RolloutConfig) -> int:
    """The original loop: all active trajectories advance one turn together; returns the number of tool calls."""
    params = SamplingParams(max_new_tokens=config.max_new_tokens_per_turn, temperature=0.0, stop=STOP_STRINGS)
    contexts = [list(p) for p in prompts]
    active = list(range(len(prompts)))
    calls = 0
    for _ in range(config.max_turns + 1):
        generations = engine.generate([contexts[i] for i in active], params)
        pending: list[tuple[int, str]] = []
        for i, generation in zip(active, generations, strict=True):
            contexts[i] += generation.token_ids
            action = parse_action(engine.tokenizer.decode(generation.token_ids))
            if action is not None and action.kind == "search":
                pending.append((i, action.content))
        results = await tools.call_many([("search", query) for _, query in pending])
        calls += len(results)
        for (i, _), result in zip(pending, results, strict=True):
            contexts[i] += engine.tokenizer(format_observation(result.text), add_special_tokens=False)["input_ids"]
        active = [i for i, _ in pending]
        if not active:
            break
    return calls


def one_batch(loop: str, tokenizer: Any, prompts: list[list[int]], latency: tuple[float, float], seed: int) -> dict:
    config = RolloutConfig(max_turns=4, max_new_tokens_per_turn=32, max_response_tokens=512)
    tools = ToolRegistry({"search": SleepTool("search", *latency, seed)}, max_concurrency=1024)
    engine = scripted_engine(tokenizer, seed)
    begin = time.perf_counter()
    if loop == LOOPS[0]:
        calls = asyncio.run(turn_synchronous(engine, tools, prompts, config))
    else:
        runner = RolloutRunner(engine, tools, config)
        trajectories = runner.run(
            prompts, [None] * len(prompts), runner.sampling_params(greedy=True), frozenset({"search"})
        )
        runner.loop.close()
        calls = sum(t.tool_calls.get("search", 0) for t in trajectories)
    return {"wall_s": time.perf_counter() - begin, "tool_calls": calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="batch 8 only")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="default 8 32 64 (--quick 8)")
    parser.add_argument("--latency", type=float, nargs=2, default=[0.2, 2.0], metavar=("LOW", "HIGH"))
    parser.add_argument("--rounds", type=int, default=3, help="rounds of interleaved loops (at least 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "runs" / "bench")
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be at least 3: a ratio from fewer rounds says nothing about its spread")
    from transformers import AutoTokenizer

    from tapo.models.resolve import resolve_model
    from tapo.prompts.templates import render_prompt

    say = Console(soft_wrap=True).print
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))
    prompts = [render_prompt(tokenizer, q, "compact_search_only") for q in QUESTIONS]
    with recorded("async", args.quick, args.out, say) as run:
        run.notes.append(f"tool latency U({args.latency[0]:g}, {args.latency[1]:g}) s, 1-3 searches per trajectory")
        for batch in args.batches or ([8] if args.quick else [8, 32, 64]):
            figure = Figure(
                f"{batch} trajectories",
                "wall_s",
                "s",
                LOOPS[0],
                LOOPS,
                higher_is_better=False,
                columns={"tool_calls": "tool calls"},
            )

            def measure(loop: str, _round: int, batch: int = batch) -> dict[str, float]:
                return one_batch(loop, tokenizer, prompts[:batch], args.latency, args.seed)

            run.figures.append(interleave(figure, measure, args.rounds, on_sample=say))
            say(figure_markdown(asdict(figure), run.command, args.quick))


if __name__ == "__main__":
    main()
