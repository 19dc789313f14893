"""Does asynchronous RL learn as well as the synchronous loop? The learnable tiny task (the training-loop tests'
task: reward = share of sampled ids in the lower half of the vocabulary, tiny random model, real transformers
sampling) trained for the same steps with ``trainer.max_staleness`` 0, 1 and 2, on the same seeds.

Each run's score is its mean reward over the last two steps. The table gives each mode's mean over the seeds and
its paired difference against the synchronous run of the same seed, with a paired-bootstrap 95 % interval: "same
reward within noise" means an interval that holds 0 (and is narrow enough to say something). Runs are interleaved
(seed by seed, modes rotated), one torch thread each; wall times are recorded but are not the point here
(``bench_async_rl.py`` measures speed). A study, not a speed benchmark: it is not in ``make bench``, and it
writes ``async_learning.json`` to ``runs/studies`` (``benchmarks/figures.py`` reads speed figures only).

    python benchmarks/study_async_learning.py            # 6 seeds x 3 modes x 8 steps, ~10 minutes on 2 cores
    python benchmarks/study_async_learning.py --quick    # 3 seeds x 2 modes x 6 steps
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the learnable task the training-loop tests use

MODES = {"synchronous": 0, "async staleness 1": 1, "async staleness 2": 2}
"""Name -> trainer.max_staleness; the first is the baseline of the paired differences."""


def train(checkpoint: Path, out_dir: Path, seed: int, staleness: int, steps: int) -> list[float]:
    """One seeded run of the learnable tiny task; its reward per step."""
    from tapo.config import load_config
    from tapo.engines.hf import HFEngine
    from tapo.io.runs import RunDir
    from tapo.train.run import build_rl_run
    from tapo.train.setup import make_accelerator
    from tiny_task import SETTINGS, examples, lower_half

    config = load_config(
        None,
        [
            f"model.name={checkpoint}",
            f"run.output_dir={out_dir}",
            f"run.name=s{seed}-k{staleness}",
            f"run.seed={seed}",
            *SETTINGS,
            "trainer.max_num_gen_batches=2",
            "trainer.save_every=1000",
            f"trainer.max_steps={steps}",
            f"trainer.max_staleness={staleness}",
            "rollout.temperature=0.1",
        ],
    )
    run = RunDir.create(config)
    accelerator = make_accelerator(config, run.root)

    def engine(model: object, tokenizer: object) -> HFEngine:
        # the synchronous loop samples with the trainer's own model; the producer needs a copy of its own
        return HFEngine(model, tokenizer, own_copy=staleness > 0)

    with build_rl_run(config, run, accelerator, examples(), score=lower_half, make_engine=engine) as rl:
        return [row["reward/mean"] for row in rl.train()]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 seeds, synchronous and staleness 1, 6 steps")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per mode (default 6; --quick 3)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default 8; --quick 6)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "studies", help="results directory")
    args = parser.parse_args()
    args.seeds = args.seeds or (3 if args.quick else 6)
    args.steps = args.steps or (6 if args.quick else 8)
    return args


def main() -> None:
    import torch
    from harness import load_average, rotated
    from rich.console import Console
    from rich.table import Table

    from tapo.models.tiny import save_tiny_checkpoint
    from tapo.stats import mean_interval, paired_difference

    args = parse_args()
    torch.set_num_threads(1)
    say = Console(soft_wrap=True).print
    modes = list(MODES)[:2] if args.quick else list(MODES)
    scores: dict[str, list[float]] = {mode: [] for mode in modes}
    curves: dict[str, list[list[float]]] = {mode: [] for mode in modes}
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    load_before = load_average()
    total, done, began = args.seeds * len(modes), 0, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-async-learning-") as tmp:
        checkpoint = save_tiny_checkpoint(Path(tmp) / "model")
        for seed in range(args.seeds):
            for mode in rotated(modes, seed):
                start = time.perf_counter()
                rewards = train(checkpoint, Path(tmp) / "runs", seed, MODES[mode], args.steps)
                seconds[mode].append(time.perf_counter() - start)
                curves[mode].append(rewards)
                scores[mode].append(statistics.mean(rewards[-2:]))
                done += 1
                eta = (time.perf_counter() - began) / done * (total - done)
                say(f"{done}/{total} seed {seed} {mode}: last-2 reward {scores[mode][-1]:.3f}  ETA {eta:.0f} s")
    baseline = modes[0]
    table = Table(title=f"learnable tiny task, {args.seeds} seeds x {args.steps} steps")
    for column in ("mode", "first-2 reward", "last-2 reward [95 % CI]", f"vs {baseline} (paired)", "s per run"):
        table.add_column(column)
    rows = []
    for mode in modes:
        first = statistics.mean(statistics.mean(c[:2]) for c in curves[mode])
        last = mean_interval(scores[mode])
        diff = paired_difference(scores[mode], scores[baseline]) if mode != baseline else None
        shown = diff.plain(3) if diff is not None else "-"
        table.add_row(mode, f"{first:.3f}", last.plain(3), shown, f"{statistics.mean(seconds[mode]):.0f}")
        rows.append(
            {
                "mode": mode,
                "max_staleness": MODES[mode],
                "first2_mean": first,
                "last2": last.to_dict(),
                "vs_baseline": diff.to_dict() if diff is not None else None,
                "scores": scores[mode],
                "curves": curves[mode],
                "seconds": seconds[mode],
            }
        )
    say(table)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " ".join([sys.executable, *sys.argv]),
        "load_before": load_before,
        "load_after": load_average(),
        "seeds": args.seeds,
        "steps": args.steps,
        "rows": rows,
    }
    path = args.out / "async_learning.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    say(f"saved {path} (load before {load_before}, after {result['load_after']})")


if __name__ == "__main__":
    main()
