"""Training step time and tokens/s: tapo's DAPO trainer against TRL's GRPOTrainer (loss_type "dapo").

Same model (SmolLM2-135M-Instruct), same prompts (the compact no-tools template), same batch
(prompts x group size), same mini/micro-batches, same completion length, same reward, no tools, no
dynamic sampling, one optimizer step per generation on both sides, run one after the other in this
process with the same thread count. Prints a table and writes JSON with --out.

    .venv/bin/python benchmarks/bench_train.py --steps 3 --out runs/bench_train.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tapo.config import load_config
from tapo.data.schema import Example
from tapo.engines.hf import HFEngine
from tapo.io.atomic import write_json
from tapo.io.runs import RunDir
from tapo.models.resolve import resolve_model
from tapo.prompts.templates import get_template
from tapo.records import RewardBreakdown, Trajectory
from tapo.train.setup import load_policy, make_accelerator
from tapo.train.source import ToolRolloutSource
from tapo.train.trainer import DapoTrainer

TEMPLATE = "compact_no_tools"
QUESTIONS = [f"What is {a} times {b}? Explain briefly." for a, b in zip(range(3, 40, 3), range(7, 60, 4), strict=False)]


def digit_reward(text: str) -> float:
    """Share of the first 20 characters that are digits: cheap, and it varies across samples."""
    head = text[:20]
    return sum(c.isdigit() for c in head) / max(1, len(head))


def score(trajs: list[Trajectory]) -> None:
    for traj in trajs:
        r = digit_reward(traj.response_text)
        traj.reward = RewardBreakdown(True, r, 0.0, r, r > 0.5)


def run_tapo(args: argparse.Namespace, out_dir: Path) -> dict[str, float]:
    overrides = [
        "model.name=smollm2-135m-instruct",
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
        f"trainer.mini_batch_size={args.prompts * args.group}",
        f"trainer.micro_batch_size={args.micro}",
        "trainer.filter_groups=false",
        "trainer.log_trajectories=0",
        f"trainer.max_steps={args.steps + 1}",
        "trainer.save_every=1000",
    ]
    config = load_config(None, overrides)
    run = RunDir.create(config)
    accelerator = make_accelerator(config, run.root)
    model, tokenizer = load_policy(config.model)
    engine = HFEngine(model, tokenizer, batch_size=args.prompts * args.group)
    source = ToolRolloutSource(config, model, tokenizer, score=score, engine=engine)
    examples = [Example(id=f"q{i}", question=q, data_source="bench", golds=["0"]) for i, q in enumerate(QUESTIONS)]
    trainer = DapoTrainer(config, run, accelerator, model, tokenizer, source, examples)
    rows = [trainer.train_step() for _ in range(args.steps + 1)][1:]  # the first step warms caches up
    step_s = statistics.fmean(r["time/step_s"] for r in rows)
    tokens = statistics.fmean(r["response/model_tokens"] * args.prompts * args.group for r in rows)
    return {"step_s": step_s, "tokens_per_s": tokens / step_s, "completion_tokens": tokens}


def run_trl(args: argparse.Namespace, out_dir: Path) -> dict[str, float]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    path = resolve_model("smollm2-135m-instruct")
    template = get_template(TEMPLATE)
    rows = [{"prompt": [{"role": "user", "content": template.fill(q)}]} for q in QUESTIONS]
    per_step = args.prompts * args.group

    def reward(completions: list, **_: object) -> list[float]:
        return [digit_reward(c[0]["content"] if isinstance(c, list) else c) for c in completions]

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.stamps: list[float] = [time.perf_counter()]
            self.lengths: list[float] = []

        def on_step_end(self, *_: object, **__: object) -> None:
            self.stamps.append(time.perf_counter())

        def on_log(self, _args: object, _state: object, _control: object, logs: dict | None = None, **__: object):
            if logs and "completions/mean_length" in logs:
                self.lengths.append(float(logs["completions/mean_length"]))

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
        max_steps=args.steps + 1,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        seed=0,
        disable_tqdm=True,
    )
    timer = Timer()
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
        processing_class=AutoTokenizer.from_pretrained(path),
        reward_funcs=reward,
        args=config,
        train_dataset=Dataset.from_list(rows),
        callbacks=[timer],
    )
    trainer.train()
    durations = [b - a for a, b in zip(timer.stamps, timer.stamps[1:], strict=False)][1:]
    step_s = statistics.fmean(durations)
    tokens = statistics.fmean(timer.lengths[1:] or timer.lengths) * per_step
    return {"step_s": step_s, "tokens_per_s": tokens / step_s, "completion_tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side (after one warm-up step)")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--length", type=int, default=64, help="completion tokens at most")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tapo = run_tapo(args, Path(tmp))
        trl = run_trl(args, Path(tmp))
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "trainer", "step time (s)", "completion tokens/step", "tokens/s", title="DAPO step, SmolLM2-135M, CPU"
    )
    for name, res in (("tapo", tapo), ("trl GRPOTrainer (dapo)", trl)):
        table.add_row(name, f"{res['step_s']:.2f}", f"{res['completion_tokens']:.0f}", f"{res['tokens_per_s']:.1f}")
    Console().print(table)
    ratio = trl["step_s"] / tapo["step_s"]
    throughput = tapo["tokens_per_s"] / trl["tokens_per_s"]
    print(f"tapo step-time speed-up over TRL: {ratio:.2f}x; tokens/s ratio {throughput:.2f}")
    if args.out:
        write_json(
            args.out, {"tapo": tapo, "trl": trl, "speedup": ratio, "settings": vars(args) | {"out": str(args.out)}}
        )


if __name__ == "__main__":
    main()
