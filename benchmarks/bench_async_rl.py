"""Asynchronous RL against the synchronous loop: trajectories trained per second and RL step wall time, synchronous
(``trainer.max_staleness=0``) against staleness 1 and 2, with the real search tool at its natural latency and with
0.5 s and 2 s added to every call.

Each variant is a long-lived worker process (harness.Worker) holding a whole training run: a loopback search
server (``tapo serve search`` in a process of its own over a small BM25 index, ``--delay-s`` the added latency;
in the worker's own process its request handling competed with the update for the interpreter lock, which a
deployment's separate server does not), the real search tool
through the remote backend (result cache off, so every call reaches the server), the transformers trainer on the
tiny random model, and a ``ScriptedEngine`` whose trajectories each search ``--searches`` times, then answer (the
tiny random model never writes a tool call, so the rollout's text is scripted; the tool calls, the rollout loop,
the producer and the update are the real ones). The variants of one latency are interleaved, order rotated every
round. No dynamic sampling: every step takes one round of prompts x group trajectories.

An asynchronous worker's producer samples ahead while the parent measures the other variants, so each request
first runs ``max(1, staleness)`` untimed steps (which take the rounds sampled while it waited), then the timed ones.

    python benchmarks/bench_async_rl.py           # full: 4 prompts x 4, 2 searches, 4 timed steps, 3 rounds, all cores
    python benchmarks/bench_async_rl.py --quick   # ~5 minutes: 2 prompts x 2, 1 search, 2 timed steps
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness import Figure, Worker, interleave_workers, serve, start_search_server
from recording import recorded

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"synchronous": 0, "async staleness 1": 1, "async staleness 2": 2}
"""Name -> trainer.max_staleness. The first is the baseline of the ratios."""
LATENCIES = (0.0, 0.5, 2.0)
"""Seconds added to every search call (0: the loopback server's natural latency)."""
PASSAGES = [
    {"id": str(i), "title": f"Topic {i}", "text": f"Fact number {i} says that item {i} weighs {i * 7 % 97} grams."}
    for i in range(200)
]


def worker(args: argparse.Namespace, staleness: int, out_dir: Path) -> None:
    from tapo.config import load_config
    from tapo.data.schema import Example
    from tapo.engines.scripted import ScriptedEngine
    from tapo.io.runs import RunDir
    from tapo.models.tiny import save_tiny_checkpoint
    from tapo.records import RewardBreakdown, Trajectory
    from tapo.tools.search.bm25 import BM25Index
    from tapo.train.run import build_rl_run
    from tapo.train.setup import make_accelerator

    def script(context: list[int], turn: int) -> str:
        if turn < args.searches:
            return f"<search>item {(len(context) * 31 + turn) % len(PASSAGES)} weight</search>"
        return "<answer>42</answer>"

    def score(trajs: list[Trajectory]) -> None:  # a constant reward: the update's cost, not its direction
        for traj in trajs:
            traj.reward = RewardBreakdown(True, 1.0, 0.0, 1.0, True)

    BM25Index.build(PASSAGES, out_dir / "index")
    checkpoint = save_tiny_checkpoint(out_dir / "model")
    per_step = args.prompts * args.group
    rollout_settings = {"max_turns": args.searches, "max_new_tokens_per_turn": 32, "max_response_tokens": 512}
    trainer_settings = {  # one mini-batch per step, no dynamic sampling: every step takes one round
        "max_staleness": staleness,
        "prompts_per_step": args.prompts,
        "group_size": args.group,
        "mini_batch_size": per_step,
        "micro_batch_size": args.group,
        "filter_groups": "false",
        "warmup_steps": 0,
        "log_trajectories": 0,
        "max_steps": 100_000,
        "save_every": 100_000,
    }
    server, url = start_search_server(out_dir / "index", delay_s=args.delay)
    try:
        config = load_config(
            None,
            [
                f"model.name={checkpoint}",
                f"run.output_dir={out_dir}",
                "run.name=bench-async-rl",
                "data.template=compact_search_only",
                "tools.enabled=[search]",
                "tools.search.backend=remote",
                f"tools.search.url={url}",
                "tools.search.cache.enabled=false",
                "reward.overlong.enabled=false",
                *(f"rollout.{key}={value}" for key, value in rollout_settings.items()),
                *(f"trainer.{key}={value}" for key, value in trainer_settings.items()),
            ],
        )
        run = RunDir.create(config)
        accelerator = make_accelerator(config, run.root)
        examples = [
            Example(id=f"q{i}", question=f"How heavy is item {i}?", data_source="bench", golds=["42"])
            for i in range(64)
        ]
        with build_rl_run(
            config, run, accelerator, examples, score=score, make_engine=lambda _m, t: ScriptedEngine(t, script)
        ) as rl:
            trainer = rl.trainer

            def steps(_message: dict[str, Any]) -> dict[str, float]:
                for _ in range(max(1, staleness)):  # take what was sampled ahead while the parent measured others
                    trainer.train_step()
                begin = time.perf_counter()
                rows = [trainer.train_step() for _ in range(args.steps)]
                seconds = time.perf_counter() - begin
                return {
                    "traj_s": args.steps * per_step / seconds,
                    "step_s": seconds / args.steps,
                    "tools_s": statistics.mean(r["time/tools_s"] for r in rows),
                    "update_s": statistics.mean(r["time/update_s"] for r in rows),
                    "wait_s": statistics.mean(r.get("async/trainer_wait_s", r["time/rollout_s"]) for r in rows),
                    "lag": statistics.mean(r.get("async/staleness_mean", 0.0) for r in rows),
                }

            serve(steps)
    finally:
        server.terminate()
        server.wait(10)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~5 minute smoke run: 2 prompts x 2, 1 search")
    parser.add_argument("--rounds", type=int, default=3, help="requests per variant, interleaved (at least 3)")
    parser.add_argument("--prompts", type=int, default=None, help="prompts per step (default 4; --quick 2)")
    parser.add_argument("--group", type=int, default=None, help="samples per prompt (default 4; --quick 2)")
    parser.add_argument("--searches", type=int, default=None, help="search calls per trajectory (default 2; --quick 1)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per request (default 4; --quick 2)")
    parser.add_argument("--latencies", type=float, nargs="+", default=list(LATENCIES), help="added search seconds")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads of every worker; 0 (the default) = every core this process may use, as run.torch_threads",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench", help="results directory")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--delay", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.prompts = args.prompts or (2 if args.quick else 4)
    args.group = args.group or (2 if args.quick else 4)
    args.searches = args.searches or (1 if args.quick else 2)
    args.steps = args.steps or (2 if args.quick else 4)
    if args.rounds < 3:
        parser.error("--rounds must be at least 3: a ratio from fewer rounds says nothing about its spread")
    return args


def worker_command(args: argparse.Namespace, variant: str, delay: float) -> list[str]:
    shared = ["--prompts", args.prompts, "--group", args.group, "--searches", args.searches, "--steps", args.steps]
    return [sys.executable, __file__, "--worker", variant, "--delay", str(delay), "--threads", str(args.threads)] + [
        str(value) for value in shared
    ]


def main() -> None:
    import torch

    from tapo.cli.common import set_threads

    args = parse_args()
    set_threads(args.threads)
    args.threads = torch.get_num_threads()  # what 0 resolved to: passed on to the workers and named in the notes
    if args.worker:
        with tempfile.TemporaryDirectory(prefix="bench-async-rl-") as tmp:
            worker(args, VARIANTS[args.worker], Path(tmp))
        return
    from figures import figure_markdown
    from rich.console import Console

    say = Console(soft_wrap=True).print
    names = list(VARIANTS)
    with recorded("async_rl", args.quick, args.out, say) as run:
        run.notes.append(
            f"{args.prompts} prompts x {args.group} samples per step, {args.searches} search call(s) per trajectory "
            f"(scripted text, real search tool over a loopback server), tiny random model, {args.steps} timed steps "
            f"per request, {args.threads} torch thread(s) per worker"
        )
        for delay in args.latencies:
            figure = Figure(
                f"RL steps with {delay:g} s added per search call",
                "traj_s",
                "trajectories/s",
                names[0],
                names,
                columns={
                    "step_s": "step s",
                    "wait_s": "trainer wait s",
                    "tools_s": "tool s",
                    "update_s": "update s",
                    "lag": "staleness",
                },
                settings={"added_search_s": delay, "prompts": args.prompts, "group": args.group},
            )
            with ExitStack() as workers_of_this_latency:
                workers = {
                    n: workers_of_this_latency.enter_context(
                        Worker(
                            worker_command(args, n, delay), args.out / "logs" / f"async_rl-{_slug(n)}-{delay:g}s.log"
                        )
                    )
                    for n in names
                }
                interleave_workers(figure, workers, {"op": "steps"}, args.rounds, say, f" ({delay:g} s)")
            run.figures.append(figure)
            say(figure_markdown(asdict(figure), run.command, args.quick))


def _slug(name: str) -> str:
    return name.replace(" ", "_")


if __name__ == "__main__":
    main()
