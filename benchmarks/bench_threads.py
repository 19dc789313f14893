"""Torch threads per process: chat-like single-sequence generation and a batch-16 rollout at ``run.torch_threads``
1, 2 and 0 (every core this process may use), interleaved, to choose the default of ``run.torch_threads``.

On a busy 2-core machine 1 thread was 1.75-25x faster than 2 for this model and ``0`` about 5x slower than 1 for
chat (issues #15, #17): extra threads wait for cores other processes hold. Run it on a quiet machine too; the
default should hold on both. Same machinery as bench_rollout.py (TAPO-mini questions, the real tools, the default
profile's budgets), transformers engine in fp32. The training side of the choice (1 vs 2 threads for an RL update
of the default profile) is bench_update.py's "length buckets, 2 threads" arm.

    python benchmarks/bench_threads.py            # full: chat and batch 16 at the profile's budgets, 3 rounds
    python benchmarks/bench_threads.py --quick    # ~2 minutes: short turns, batch 4
"""

from __future__ import annotations

import argparse

from bench_rollout import QUICK, TOOLS, Suite, Workload, main

THREADS: dict[str, list[str]] = {
    "1 thread": ["run.torch_threads=1"],
    "2 threads": ["run.torch_threads=2"],
    "all cores (0)": ["run.torch_threads=0"],
}


def threads_suite(args: argparse.Namespace) -> Suite:
    extra = QUICK if args.quick else ()
    batch = (args.batches or [4 if args.quick else 16])[0]
    return Suite(
        "threads",
        dict(THREADS),
        [
            Workload("chat: one question, greedy, with tools", 1, (*TOOLS, *extra), greedy=True),
            Workload(f"rollout: batch {batch}, sampled, with tools", batch, (*TOOLS, *extra)),
        ],
        notes=[
            "`run.torch_threads=0` means every core in this process's affinity mask (tapo.cli.common.set_threads)",
            "the variants share one worker process (one model in memory): each request sets its thread count first",
        ],
    )


if __name__ == "__main__":
    main(threads_suite, __doc__)
