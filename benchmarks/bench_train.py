"""One RL step: tapo's DAPO trainer against TRL's GRPOTrainer (``loss_type="dapo"``), and tapo in fp32 against
``trainer.bf16=true`` (bf16 autocast of forward and backward, fp32 master weights), interleaved step by step.

Each variant is a long-lived worker process holding its own trainer (harness.Worker): the parent asks each in
turn, order rotated every round, for one step and gets its wall time back, so every side sees the same minutes of
the machine. TRL's loop is its own (``trainer.train()``): a callback waits for the parent's request at each step's
beginning and answers at its log line. Same model (SmolLM2-135M-Instruct), prompts (the compact no-tools template),
batch (prompts x group), micro-batches, completion cap, reward, no tools, no dynamic sampling, one optimizer step
per generation, the same torch threads. One untimed step per worker first.

    python benchmarks/bench_train.py             # full: 4 prompts x 4, 64 tokens, 3 rounds
    python benchmarks/bench_train.py --quick     # ~2 minutes: 2 prompts x 2, 16 tokens
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness import Channel, Figure, Worker, interleave_workers, serve
from recording import recorded

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
TEMPLATE = "compact_no_tools"
QUESTIONS = [f"What is {a} times {b}? Explain briefly." for a, b in zip(range(3, 40, 3), range(7, 60, 4), strict=False)]
VARIANTS = {
    "tapo fp32": ("tapo", False),
    "tapo bf16 autocast": ("tapo", True),
    "TRL GRPOTrainer fp32": ("trl", False),
    "TRL GRPOTrainer bf16 autocast": ("trl", True),
}
"""Name -> (trainer, bf16 autocast). The first is the baseline of the ratios."""
DEFAULT = ["tapo fp32", "tapo bf16 autocast", "TRL GRPOTrainer fp32"]


def digit_reward(text: str) -> float:
    """Share of the first 20 characters that are digits: cheap, and it varies across samples."""
    head = text[:20]
    return sum(c.isdigit() for c in head) / max(1, len(head))


# ---------------------------------------------------------------- workers: one trainer each


def tapo_worker(args: argparse.Namespace, bf16: bool, out_dir: Path) -> None:
    from tapo.config import load_config
    from tapo.data.schema import Example
    from tapo.engines.hf import HFEngine
    from tapo.io.runs import RunDir
    from tapo.records import RewardBreakdown, Trajectory
    from tapo.train.run import build_rl_run
    from tapo.train.setup import make_accelerator

    def score(trajs: list[Trajectory]) -> None:
        for traj in trajs:
            r = digit_reward(traj.response_text)
            traj.reward = RewardBreakdown(True, r, 0.0, r, r > 0.5)

    per_step = args.prompts * args.group
    config = load_config(
        None,
        [
            f"model.name={MODEL}",
            f"run.output_dir={out_dir}",
            "run.name=bench-tapo",
            f"data.template={TEMPLATE}",
            "rollout.max_turns=0",
            f"rollout.max_new_tokens_per_turn={args.length}",
            f"rollout.max_response_tokens={args.length}",
            "reward.overlong.enabled=false",
            "trainer.lr=1e-6",
            "trainer.warmup_steps=0",
            f"trainer.prompts_per_step={args.prompts}",
            f"trainer.group_size={args.group}",
            f"trainer.mini_batch_size={per_step}",
            f"trainer.micro_batch_size={args.micro}",
            "trainer.filter_groups=false",
            "trainer.log_trajectories=0",
            "trainer.max_steps=100000",
            "trainer.save_every=100000",
            f"trainer.bf16={str(bf16).lower()}",
        ],
    )
    run = RunDir.create(config)
    accelerator = make_accelerator(config, run.root)
    examples = [Example(id=f"q{i}", question=q, data_source="bench", golds=["0"]) for i, q in enumerate(QUESTIONS)]
    trainer = build_rl_run(
        config, run, accelerator, examples, score=score, make_engine=lambda m, t: HFEngine(m, t, per_step)
    ).trainer

    def step(_message: dict[str, Any]) -> dict[str, float]:
        begin = time.perf_counter()
        row = trainer.train_step()
        seconds = time.perf_counter() - begin
        tokens = row["response/model_tokens"] * per_step  # a per-trajectory mean in the metrics row
        return {
            "step_s": seconds,
            "tokens": tokens,
            "tok_s": tokens / seconds,
            "rollout_s": row["time/rollout_s"],
            "update_s": row["time/update_s"],  # forward + backward + optimizer: where bf16 autocast acts
        }

    serve(step)


class _Stop(Exception):
    """The parent closed the channel: leave TRL's training loop."""


def trl_worker(args: argparse.Namespace, bf16: bool, out_dir: Path) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from tapo.models.resolve import resolve_model
    from tapo.prompts.templates import get_template

    path = resolve_model(MODEL)
    template = get_template(TEMPLATE)
    rows = [{"prompt": [{"role": "user", "content": template.fill(q)}]} for q in QUESTIONS]
    per_step = args.prompts * args.group
    channel = Channel()

    def reward(completions: list, **_: object) -> list[float]:
        return [digit_reward(c[0]["content"] if isinstance(c, list) else c) for c in completions]

    class Stepper(TrainerCallback):
        """Each step waits for a request; its reply goes out with the step's log line (which has the lengths)."""

        begin = end = 0.0

        def on_step_begin(self, *_: object, **__: object) -> None:
            if channel.receive() is None:
                raise _Stop
            self.begin = time.perf_counter()

        def on_step_end(self, *_: object, **__: object) -> None:
            self.end = time.perf_counter()

        def on_log(self, _args: object, _state: object, _control: object, logs: dict | None = None, **__: object):
            if logs and "completions/mean_length" in logs:
                seconds, tokens = self.end - self.begin, float(logs["completions/mean_length"]) * per_step
                channel.send({"step_s": seconds, "tokens": tokens, "tok_s": tokens / seconds})

    config = GRPOConfig(
        output_dir=str(out_dir / "trl"),
        loss_type="dapo",
        epsilon=0.2,
        epsilon_high=0.28,
        beta=0.0,
        num_generations=args.group,
        per_device_train_batch_size=args.micro,
        gradient_accumulation_steps=per_step // args.micro,
        generation_batch_size=per_step,
        max_completion_length=args.length,
        temperature=1.0,
        top_p=1.0,
        learning_rate=1e-6,
        weight_decay=0.1,
        max_grad_norm=1.0,
        lr_scheduler_type="constant",
        max_steps=100_000,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=bf16,
        seed=0,
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
        processing_class=AutoTokenizer.from_pretrained(path),
        reward_funcs=reward,
        args=config,
        train_dataset=Dataset.from_list(rows),
        callbacks=[Stepper()],
    )
    try:
        trainer.train()
    except _Stop:
        return


# ---------------------------------------------------------------- the parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~2 minute smoke run: 2 prompts x 2, 16 tokens")
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per variant, interleaved (at least 3)")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=None, help=f"default: {DEFAULT}")
    parser.add_argument("--prompts", type=int, default=None, help="prompts per step (default 4; --quick 2)")
    parser.add_argument("--group", type=int, default=None, help="samples per prompt (default 4; --quick 2)")
    parser.add_argument("--micro", type=int, default=4, help="micro-batch (trajectories per forward/backward)")
    parser.add_argument("--length", type=int, default=None, help="completion tokens at most (default 64; --quick 16)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every worker")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench", help="results directory")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.prompts = args.prompts or (2 if args.quick else 4)
    args.group = args.group or (2 if args.quick else 4)
    args.length = args.length or (16 if args.quick else 64)
    if (args.prompts * args.group) % args.micro:
        parser.error(f"--micro {args.micro} must divide prompts x group = {args.prompts * args.group}")
    if args.rounds < 3:
        parser.error("--rounds must be at least 3: a ratio from fewer rounds says nothing about its spread")
    return args


def worker_command(args: argparse.Namespace, variant: str) -> list[str]:
    import sys

    shared = ["--prompts", args.prompts, "--group", args.group, "--micro", args.micro, "--length", args.length]
    return [sys.executable, __file__, "--worker", variant, "--threads", str(args.threads), *map(str, shared)]


def main() -> None:
    import torch

    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        kind, bf16 = VARIANTS[args.worker]
        with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
            (tapo_worker if kind == "tapo" else trl_worker)(args, bf16, Path(tmp))
        return
    from figures import figure_markdown
    from rich.console import Console

    say = Console(soft_wrap=True).print
    names = args.only or DEFAULT
    with recorded("train", args.quick, args.out, say) as run:
        run.notes.append(
            f"{args.prompts} prompts x {args.group} samples per step, micro-batches of {args.micro}, at most "
            f"{args.length} completion tokens, {args.threads} torch thread(s) per worker, fp32 master weights"
        )
        workers = {
            n: Worker(worker_command(args, n), args.out / "logs" / f"train-{n.replace(' ', '_')}.log") for n in names
        }
        try:
            figure = Figure(
                "one RL step (rollout + update)",
                "step_s",
                "s",
                names[0],
                names,
                higher_is_better=False,
                columns={
                    "tok_s": "completion tok/s",
                    "tokens": "completion tokens",
                    "rollout_s": "rollout s (tapo)",
                    "update_s": "update s (tapo)",
                },
                settings={"prompts": args.prompts, "group": args.group, "length": args.length, "threads": args.threads},
            )
            interleave_workers(figure, workers, {"op": "step"}, args.rounds, say)
            run.figures.append(figure)
            say(figure_markdown(asdict(figure), run.command, args.quick))
        finally:
            for worker in workers.values():
                worker.close()


if __name__ == "__main__":
    main()
