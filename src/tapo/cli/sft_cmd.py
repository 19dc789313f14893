"""``tapo sft``: the supervised warm start on protocol demonstrations, before RL."""

from __future__ import annotations

from pathlib import Path

import typer

from tapo.cli.common import config_or_exit, console, disk_full_exits, fail, run_lock, set_threads
from tapo.cli.preflight import check_model, check_output_dir, check_sft_memory, preflight
from tapo.config.migrate import sft_override_error


def sft(
    overrides: list[str] = typer.Argument(None, help="KEY=VALUE config overrides, e.g. sft.epochs=3"),
    config_files: list[str] = typer.Option(None, "--config", "-c", help="YAML config (repeatable, merged in order)"),
    demos: Path = typer.Option(..., "--demos", help="JSONL of Trajectory.to_row() rows to imitate"),
    progress: bool = typer.Option(True, help="show the live progress display"),
) -> None:
    """Fine-tune the policy on the model tokens of demonstration trajectories; writes runs/NAME/checkpoints."""
    if problem := sft_override_error(overrides or []):
        raise fail(problem)
    config = config_or_exit(config_files, overrides)
    run_root = Path(config.run.output_dir) / config.run.name
    with preflight():
        check_output_dir(config.run.output_dir, "run.output_dir")
        check_model(config.model.name)
    from transformers import AutoTokenizer

    from tapo.models.resolve import resolve_model
    from tapo.train.sft import DemoError, DemoLengths, load_demos

    vocab_size = len(AutoTokenizer.from_pretrained(resolve_model(config.model.name)))
    try:
        lengths = DemoLengths(config.data.max_prompt_tokens, config.rollout.max_response_tokens)
        rows = load_demos(demos, config.sft.max_examples, vocab_size, lengths)
    except DemoError as error:
        raise fail(str(error)) from None
    with preflight():  # the estimated peak, before the model is loaded
        check_sft_memory(config, max((len(d.prompt_ids) + len(d.response_ids) for d in rows), default=1))
    set_threads(config.run.torch_threads)

    from tapo.io.runs import RunDir
    from tapo.train.run import build_sft_run
    from tapo.train.setup import make_accelerator
    from tapo.train.step_display import step_progress

    run = RunDir(run_root)
    accelerator = make_accelerator(config, run.root)
    # One writer per run directory, taken before the "finished" decision: a second `tapo sft` that looked first
    # would find no checkpoint while this one trains, and train again (over its metrics and config) once it ends.
    with run_lock(run.root, accelerator.is_main_process):
        if any(run.checkpoints.glob("step-*")):  # SFT saves only at its end: this warm start is finished
            raise fail(f"{run.root} already has a finished warm start (checkpoints/step-*): choose another run.name")
        if accelerator.is_main_process:
            RunDir.create(config)
        accelerator.wait_for_everyone()
        trainer = build_sft_run(config, run, accelerator, rows)
        shown = progress and accelerator.is_main_process
        if shown:
            console.print(
                f"SFT warm start into {run.root}: {len(rows)} demonstrations, {trainer.total_steps} steps",
                highlight=False,
            )
        keys = {"sft/loss": "loss", "sft/grad_norm": "grad_norm", "time/step_s": "s/step"}
        with disk_full_exits(), step_progress(trainer.total_steps, 0, "SFT steps", keys, shown) as bar:
            metrics = trainer.fit(on_step=bar.step)
    if accelerator.is_main_process:
        first, last = metrics[0]["sft/loss"], metrics[-1]["sft/loss"]
        console.print(
            f"SFT warm start done: {len(rows)} demonstrations, {trainer.step} steps, loss {first:.3f} -> {last:.3f}; "
            f"model at {run.checkpoints / f'step-{trainer.step}' / 'model'}",
            highlight=False,
        )
