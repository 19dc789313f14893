"""``tapo train``: DAPO/TAPO reinforcement learning with tools, one process or many (``accelerate launch``)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from tapo.cli.common import config_or_exit, console, disk_full_exits, fail, set_threads
from tapo.config import TapoConfig

SHOWN = ("reward/mean", "reward/acc", "tools/calls_per_traj", "actor/loss", "actor/entropy", "time/step_s")


def _resume_config(resume: Path, config_files: list[str] | None, overrides: list[str] | None) -> TapoConfig:
    """A resumed run reuses its saved config; extra files/overrides (e.g. more steps) apply on top."""
    saved = resume / "config.yaml"
    if not saved.is_file():
        raise fail(f"--resume {resume}: no config.yaml there; is it a run directory?")
    return config_or_exit([str(saved), *(config_files or [])], overrides)


def train(
    overrides: list[str] = typer.Argument(None, help="KEY=VALUE config overrides, e.g. trainer.max_steps=20"),
    config_files: list[str] = typer.Option(None, "--config", "-c", help="YAML config (repeatable, merged in order)"),
    resume: Path | None = typer.Option(None, "--resume", help="continue the run in this directory (runs/NAME)"),
    progress: bool = typer.Option(True, help="show the live progress display"),
) -> None:
    """Train a policy with DAPO and tools on `data.train`, checkpointing into runs/NAME."""
    config = _resume_config(resume, config_files, overrides) if resume else config_or_exit(config_files, overrides)
    if config.data.train is None:
        raise fail("data.train is not set: give a training JSONL (e.g. from `tapo data build mini --out DIR`)")
    from tapo.data.io import dataset_file_problem

    if problem := dataset_file_problem(Path(config.data.train)):
        raise fail(f"data.train={config.data.train!r}: {problem}")
    run_root = Path(config.run.output_dir) / config.run.name
    if resume is not None and resume.resolve() != run_root.resolve():
        raise fail(f"--resume {resume} does not match run.output_dir/run.name = {run_root}")
    if resume is None and any(run_root.glob("checkpoints/step-*")):
        raise fail(f"{run_root} already has checkpoints: pass --resume {run_root} or choose another run.name")
    set_threads(config.run.torch_threads)

    from accelerate.utils import DistributedType

    from tapo.data.io import load_examples
    from tapo.io.runs import RunDir
    from tapo.train.progress import step_progress
    from tapo.train.setup import load_policy, make_accelerator
    from tapo.train.source import ToolRolloutSource
    from tapo.train.trainer import DapoTrainer

    try:
        examples = load_examples(config.data.train)
    except ValueError as error:  # DataError: a file that cannot be read, named with its line
        raise fail(str(error)) from None
    if not examples:
        raise fail(f"data.train={config.data.train!r} holds no usable example")
    run = RunDir(run_root)
    accelerator = make_accelerator(config, run.root)
    if accelerator.is_main_process:
        RunDir.create(config)
    accelerator.wait_for_everyone()
    model, tokenizer = load_policy(config.model)
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    source = ToolRolloutSource(
        config, model, tokenizer, process_index=accelerator.process_index, own_engine_copy=sharded
    )
    try:
        try:
            source.check_sources(examples)
        except ValueError as error:  # RewardError: a data source without a scorer
            raise fail(str(error)) from None
        trainer = DapoTrainer(config, run, accelerator, model, tokenizer, source, examples)
        if resume is not None and not trainer.resume():
            console.print(f"{run_root}: no checkpoint yet, starting from step 0")
        if accelerator.is_main_process and config.trainer.tracker != "none":
            accelerator.init_trackers(config.run.name, config=_flat(config))
        shown = progress and accelerator.is_main_process
        title = f"train {config.run.name}"
        with disk_full_exits(), step_progress(trainer.total_steps, trainer.step, title, SHOWN, shown) as update:
            rows = trainer.fit(on_step=update)
        accelerator.end_training()
    finally:
        source.close()
    if accelerator.is_main_process:
        _summary(rows, run.root)


def _flat(config: TapoConfig) -> dict[str, object]:
    """Trackers take flat scalar hyper-parameters."""
    out: dict[str, object] = {}

    def walk(prefix: str, node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else key, value)
        elif isinstance(node, int | float | str | bool):
            out[prefix] = node

    walk("", config.model_dump(mode="json"))
    return out


def _summary(rows: list[dict[str, float]], root: Path) -> None:
    if not rows:
        console.print(f"{root}: nothing to do (already at trainer.max_steps)")
        return
    table = Table("step", *(k.rsplit("/", 1)[-1] for k in SHOWN), title=f"training {root}")
    for row in rows[-10:]:
        table.add_row(str(int(row["step"])), *(f"{row.get(k, float('nan')):.3g}" for k in SHOWN))
    console.print(table)
    console.print(f"metrics: {root / 'metrics.jsonl'}  checkpoints: {root / 'checkpoints'}")
