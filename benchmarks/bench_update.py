"""The RL update of the main job's default profile: micro-batches in the mini-batch's shuffled order (what the
update did before ``trainer.length_buckets``) against micro-batches cut by length, interleaved update by update.

The trajectories come from one real rollout of the profile's RL step (``trainer.prompts_per_step`` TAPO-mini training
questions x ``trainer.group_size`` samples, the real search and Python tools, the profile's turn and token caps and
its engine settings) through the trainer's own rollout source, so the lengths are a policy's, not made up. The
policy is ``--model``: the starting model by default, or a warm start (``--model runs/<job>/sft``), whose lengths
are the ones RL actually sees. Every variant then updates on those same trajectories with the profile's
mini/micro-batch sizes, bf16 setting and one optimizer step per mini-batch, in this process, order rotated each round;
one untimed update per variant first. Besides the wall time each sample records ``actor/pad_frac`` (padding's
share of the positions the update ran) and the real positions per second.

Variants: ``trainer.length_buckets`` off (the baseline) and on; the update as issue 25 measured it (buckets off, the
log-probs in one chunk, micro-batches of 8: the profile before its memory work; at 1 and at 2 threads); on with the
log-probs projected in one chunk (``trainer.logprob_chunk_tokens`` above any micro-batch: the cost of chunking); on
at 2 torch threads (the training arm of ``run.torch_threads``'s default, which bench_threads.py measures for
rollouts), also with micro-batches of 8 (little padding is left to cost, so wider matmuls may pay) and of 2 (half
the activations held at once, the update's peak memory); on with tensors
under 32 MiB served from malloc's heaps (glibc's dynamic mmap threshold after a large free: the speed cost of the 1
MiB threshold tapo fixes, :mod:`tapo.io.allocator`); and packed rows (``trainer.pack_sequences``: several
trajectories per row, position ids reset per sequence), also at 2 threads with micro-batches of 4 and of 8 (more
trajectories to pack per row).

    python benchmarks/bench_update.py                          # full: the profile's RL step, 3 rounds
    python benchmarks/bench_update.py --model runs/job/sft      # the same from the warm start
    python benchmarks/bench_update.py --quick                  # a smoke run: 2 prompts x 4, one short turn
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness import Figure, interleave, rotated
from recording import recorded

from tapo.io.allocator import MMAP_THRESHOLD_BYTES, fix_mmap_threshold

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "default"
QUICK = (
    "trainer.prompts_per_step=2",
    "trainer.mini_batch_size=8",
    "trainer.micro_batch_size=4",
    "rollout.max_turns=1",
    "rollout.max_new_tokens_per_turn=32",
    "rollout.max_response_tokens=160",
    "reward.overlong.buffer=32",
)
"""--quick: a smaller step with shorter turns, still two micro-batches per mini-batch (a smoke run of the code)."""


@dataclass(frozen=True)
class Variant:
    """Trainer settings of one arm: ``trainer.length_buckets``, ``trainer.logprob_chunk_tokens`` (None: the
    profile's), torch threads, ``trainer.pack_sequences``, ``trainer.micro_batch_size`` (None: the profile's) and
    glibc's mmap threshold during the update (tapo fixes it at 1 MiB, :mod:`tapo.io.allocator`)."""

    length_buckets: bool
    chunk_tokens: int | None = None
    threads: int = 1
    packed: bool = False
    micro: int | None = None
    mmap_threshold: int = MMAP_THRESHOLD_BYTES


ONE_CHUNK = 1 << 20
"""``trainer.logprob_chunk_tokens`` above any micro-batch's positions: the log-probs projected in one chunk."""
BASELINE = "shuffled micro-batches (length_buckets=false)"
AS_FILED = "as issue 25 measured it: shuffled, one log-prob chunk, micro-batches of 8"
AS_FILED_VARIANT = Variant(False, chunk_tokens=ONE_CHUNK, micro=8)
BUCKETS = Variant(True)
PACKED = Variant(False, packed=True)
VARIANTS = {
    BASELINE: Variant(False),
    AS_FILED: AS_FILED_VARIANT,
    f"{AS_FILED}, 2 threads": replace(AS_FILED_VARIANT, threads=2),
    "length buckets": BUCKETS,
    "length buckets, one log-prob chunk": replace(BUCKETS, chunk_tokens=ONE_CHUNK),
    "length buckets, 2 threads": replace(BUCKETS, threads=2),
    "length buckets, micro-batches of 8, 2 threads": replace(BUCKETS, micro=8, threads=2),
    "length buckets, micro-batches of 2, 2 threads": replace(BUCKETS, micro=2, threads=2),
    "length buckets, tensors under 32 MiB from malloc's heaps": replace(BUCKETS, mmap_threshold=32 * 1024**2),
    "packed rows (pack_sequences=true)": PACKED,
    "packed rows, 2 threads": replace(PACKED, threads=2),
    "packed rows, micro-batches of 8, 2 threads": replace(PACKED, micro=8, threads=2),
}


def rl_config(data_dir: Path, out_dir: Path, model: str, quick: bool) -> Any:
    """The profile's RL-stage config (common then rl overrides, as the pipeline writes it) with one generation
    round per step (no refill: the update gets exactly the step's groups) and nothing logged per step."""
    from tapo.config import load_config
    from tapo.pipeline.profiles import load_profile

    profile = load_profile(PROFILE)
    overrides = [
        f"run.output_dir={out_dir}",
        "run.name=bench-update",
        f"run.seed={profile.seed}",
        f"data.train={data_dir / 'train.jsonl'}",
        f"tools.search.backend.index_dir={data_dir / 'index'}",
        "tools.search.cache.enabled=false",
        *profile.common,
        *profile.rl,
        f"model.name={model}",
        "run.torch_threads=1",
        "trainer.filter_groups=false",
        "trainer.max_num_gen_batches=1",
        "trainer.max_steps=100000",
        "trainer.log_trajectories=0",
        *(QUICK if quick else ()),
    ]
    return load_config(None, overrides)


def measure_update(
    trainer: Any, groups: list, variant: Variant, default_chunk: int, default_micro: int
) -> dict[str, float]:
    """One ``trainer.update`` over ``groups`` under ``variant``'s settings: its wall time and the update's metrics.

    The mmap threshold of a variant holds during its update only (``mallopt`` applies to later allocations): 32 MiB
    stands for glibc's dynamic threshold after its first large free, what a process had before tapo fixed it."""
    import torch

    torch.set_num_threads(variant.threads)
    fix_mmap_threshold(variant.mmap_threshold)
    trainer.tcfg.length_buckets = variant.length_buckets
    trainer.tcfg.logprob_chunk_tokens = variant.chunk_tokens or default_chunk
    trainer.tcfg.pack_sequences = variant.packed
    trainer.tcfg.micro_batch_size = variant.micro or default_micro
    begin = time.perf_counter()
    stats = trainer.update(groups)
    seconds = time.perf_counter() - begin
    torch.set_num_threads(1)
    fix_mmap_threshold()
    return {
        "update_s": seconds,
        "pad_frac": stats["actor/pad_frac"],
        "tokens_per_s": stats["perf/update_tokens_per_s"],
        "threads": float(variant.threads),
        "micro": float(variant.micro or default_micro),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 prompts, one turn of 32 tokens")
    parser.add_argument("--rounds", type=int, default=3, help="timed updates per variant, interleaved (at least 3)")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="the policy: a model name or a warm start")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=None, help="these variants only")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench", help="results directory")
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be at least 3: a ratio from fewer rounds says nothing about its spread")
    return args


def main() -> None:
    import torch
    from figures import figure_markdown
    from rich.console import Console

    from tapo.data.io import load_examples
    from tapo.data.mini.build import build_mini
    from tapo.io.runs import RunDir
    from tapo.train.run import build_rl_run
    from tapo.train.setup import make_accelerator

    args = parse_args()
    torch.set_num_threads(1)
    fix_mmap_threshold()  # as every tapo command does (tapo.cli.main)
    say = Console(soft_wrap=True).print
    names = [n for n in VARIANTS if args.only is None or n in args.only]
    with (
        tempfile.TemporaryDirectory(prefix="bench-update-") as tmp,
        recorded("update", args.quick, args.out, say) as run,
    ):
        data_dir = Path(tmp) / "tapo-mini"
        build_mini(data_dir)  # the main job's data set and BM25 index
        config = rl_config(data_dir, Path(tmp) / "runs", args.model, args.quick)
        tcfg = config.trainer
        run_dir = RunDir.create(config)
        with build_rl_run(
            config, run_dir, make_accelerator(config, run_dir.root), load_examples(data_dir / "train.jsonl")
        ) as rl:
            say(f"rolling out {tcfg.prompts_per_step} x {tcfg.group_size} trajectories with {args.model}")
            groups, _ = rl.trainer.collect()
            lengths = sorted(len(t.prompt_ids) + len(t.response_ids) for g in groups for t in g)
            run.notes += [
                f"policy {args.model}; profile {PROFILE}{' with ' + ' '.join(QUICK) if args.quick else ''}: "
                f"{tcfg.prompts_per_step} x {tcfg.group_size} trajectories, mini-batches of {tcfg.mini_batch_size}, "
                f"micro-batches of {tcfg.micro_batch_size}, trainer.bf16={tcfg.bf16}",
                f"prompt + response lengths of the rollout: min {lengths[0]}, median {lengths[len(lengths) // 2]}, "
                f"max {lengths[-1]} positions",
                "pad_frac = padding's share of the positions the update ran (actor/pad_frac); tokens/s = real "
                "positions forward + backward per second of the update (perf/update_tokens_per_s)",
            ]
            figure = Figure(
                "one RL update of the default profile's step",
                "update_s",
                "s",
                names[0],
                names,
                higher_is_better=False,
                columns={
                    "pad_frac": "padded share",
                    "tokens_per_s": "real positions/s",
                    "threads": "torch threads",
                    "micro": "micro-batch",
                },
                settings={"model": args.model, "trajectories": len(lengths), "micro": tcfg.micro_batch_size},
            )
            chunk, micro = tcfg.logprob_chunk_tokens, tcfg.micro_batch_size

            def measure(name: str, _round: int) -> dict[str, float]:
                return measure_update(rl.trainer, groups, VARIANTS[name], chunk, micro)

            for name in rotated(names, 0):  # one untimed update each: allocator and kernel warm-up
                say(f"warming up {name}")
                measure(name, -1)
            interleave(figure, measure, args.rounds, on_sample=say)
            run.figures.append(figure)
            say(figure_markdown(asdict(figure), run.command, args.quick))


if __name__ == "__main__":
    main()
