"""``tapo train``: DAPO/TAPO reinforcement learning with tools, one process or many (``accelerate launch``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from tapo.cli.common import (
    config_or_exit,
    console,
    disk_full_exits,
    env_data_or_exit,
    env_override,
    fail,
    run_lock,
    set_threads,
)
from tapo.cli.preflight import (
    check_call_format,
    check_cpu_memory,
    check_engine,
    check_model,
    check_output_dir,
    check_reward,
    check_template,
    check_tool_definitions,
    check_tools,
    preflight,
)
from tapo.config import TapoConfig

if TYPE_CHECKING:
    from accelerate import Accelerator

    from tapo.data.schema import Example
    from tapo.io.runs import RunDir

# metric key -> its short name on the progress line and in the closing table
SHOWN = {
    "reward/mean": "reward",
    "reward/acc": "acc",
    "tools/calls_per_traj": "calls/traj",
    "actor/loss": "loss",
    "actor/entropy": "entropy",
    "time/step_s": "s/step",
}


def _resume_config(resume: Path, config_files: list[str] | None, overrides: list[str] | None) -> TapoConfig:
    """A resumed run reuses its saved config; extra files/overrides (e.g. more steps) apply on top."""
    saved = resume / "config.yaml"
    if not saved.is_file():
        raise fail(f"--resume {resume}: no config.yaml there; is it a run directory?")
    return config_or_exit([str(saved), *(config_files or [])], overrides)


def _resume_point(run_root: Path, resume_from: str) -> Path:
    """``--resume-from step-N`` (or ``N``): that checkpoint of the run, which must exist."""
    name = resume_from if resume_from.startswith("step-") else f"step-{resume_from}"
    checkpoint = run_root / "checkpoints" / name
    if not checkpoint.is_dir():
        kept = sorted(p.name for p in (run_root / "checkpoints").glob("step-*")) or ["none"]
        raise fail(f"--resume-from {resume_from}: no {checkpoint}; kept checkpoints: {', '.join(kept)}")
    return checkpoint


def _starting_point(run_root: Path, resume: bool, resume_from: str | None) -> Path | None:
    """The checkpoint to resume from (None: step 0), read under the run's lock; a fresh run over a directory that
    already has checkpoints is refused (exit 2, one line)."""
    from tapo.train.checkpoint import CheckpointError, choose_checkpoint

    if not resume:
        if any(run_root.glob("checkpoints/step-*")):
            raise fail(f"{run_root} already has checkpoints: pass --resume {run_root} or choose another run.name")
        return None
    try:  # a corrupt newest checkpoint: a warning and the previous one, still before the model loads
        explicit = _resume_point(run_root, resume_from) if resume_from else None
        return choose_checkpoint(run_root / "checkpoints", explicit)
    except CheckpointError as error:
        raise fail(str(error)) from None


def _check(config: TapoConfig) -> list[Example]:
    """Everything the run will act on, before any work and before runs/NAME is created (exit 2, one line)."""
    from tapo.prompts.templates import allowed_tools

    env_data_or_exit(config)  # the environment's rows, where its settings point data.*
    if config.data.train is None:
        raise fail(
            "data.train is not set: give a training JSONL (e.g. from `tapo data build mini --out DIR`) or an "
            "environment (--env tapo-mini)"
        )
    from tapo.data.io import dataset_file_problem

    if problem := dataset_file_problem(Path(config.data.train)):
        raise fail(f"data.train={config.data.train!r}: {problem}")
    with preflight():
        check_output_dir(config.run.output_dir, "run.output_dir")
        catalog = check_tool_definitions(config)
        check_template(config.data.template, protocol=catalog.protocol)
        check_engine(config)
        check_tools(config, allowed_tools(config.data.template, catalog.protocol) & catalog.enabled)
        check_model(config.model.name)
        check_call_format(config, catalog.protocol)
    from tapo.data.io import load_examples

    try:
        examples = load_examples(config.data.train)
    except ValueError as error:  # DataError: a file that cannot be read, named with its line
        raise fail(str(error)) from None
    if not examples:
        raise fail(f"data.train={config.data.train!r} holds no usable example")
    with preflight():
        check_reward(config, {ex.data_source for ex in examples})
        check_cpu_memory(config, examples, catalog.protocol)  # the estimated peak, before the model is loaded
    return examples


def train(
    overrides: list[str] = typer.Argument(None, help="KEY=VALUE config overrides, e.g. trainer.max_steps=20"),
    config_files: list[str] = typer.Option(None, "--config", "-c", help="YAML config (repeatable, merged in order)"),
    resume: Path | None = typer.Option(None, "--resume", help="continue the run in this directory (runs/NAME)"),
    resume_from: str | None = typer.Option(
        None, "--resume-from", help="with --resume: continue from this kept checkpoint (step-N) instead of the newest"
    ),
    env: str | None = typer.Option(
        None, "--env", help="environment: module:name, a `tapo.envs` entry point, tapo-mini or tapo-published"
    ),
    progress: bool = typer.Option(True, help="show the live progress display"),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="check the run at its scale and run one step of a tiny stand-in model, then stop"
    ),
    gpu_memory_gib: float = typer.Option(80.0, min=1.0, help="--dry-run: memory of one GPU, for the estimate"),
    dry_run_tokens: int = typer.Option(
        64, min=8, help="--dry-run: token cap of the stand-in step only (the checks use the config's budgets)"
    ),
) -> None:
    """Train a policy with DAPO and tools on `data.train`, checkpointing into runs/NAME."""
    overrides = env_override(overrides, env)
    config = _resume_config(resume, config_files, overrides) if resume else config_or_exit(config_files, overrides)
    if dry_run:
        from tapo.cli.dry_run import dry_run as check_and_step

        set_threads(config.run.torch_threads)
        env_data_or_exit(config)
        check_and_step(config, gpu_memory_gib, dry_run_tokens)
        return
    run_root = Path(config.run.output_dir) / config.run.name
    if resume_from is not None and resume is None:
        raise fail("--resume-from needs --resume RUN_DIR")
    if resume is not None and resume.resolve() != run_root.resolve():
        raise fail(f"--resume {resume} does not match run.output_dir/run.name = {run_root}")
    examples = _check(config)
    set_threads(config.run.torch_threads)

    from tapo.io.runs import RunDir
    from tapo.train.setup import make_accelerator

    run = RunDir(run_root)
    accelerator = make_accelerator(config, run.root)
    # One writer per run directory, for the whole run, taken before anything is decided from what the directory
    # holds: a second command that looked first could find no checkpoint yet and train again once this one ends.
    with run_lock(run.root, accelerator.is_main_process):
        checkpoint = _starting_point(run_root, resume is not None, resume_from)
        if accelerator.is_main_process:
            if resume is None:  # a fresh run over an earlier attempt that never checkpointed starts clean
                run.trim(0)
            RunDir.create(config)
        accelerator.wait_for_everyone()
        rows = _fit(config, run, accelerator, examples, resume is not None, checkpoint, progress)
    if accelerator.is_main_process:
        _summary(rows, run.root, _shown(config))


def _fit(
    config: TapoConfig,
    run: RunDir,
    accelerator: Accelerator,
    examples: list[Example],
    resume: bool,
    checkpoint: Path | None,
    progress: bool,
) -> list[dict[str, float]]:
    """Build the run (:mod:`tapo.train.run`), resume if asked, and train to the end with the progress display."""
    from tapo.train.checkpoint import CheckpointError
    from tapo.train.run import build_rl_run
    from tapo.train.step_display import step_progress

    with build_rl_run(config, run, accelerator, examples) as rl:
        try:
            if resume and not rl.resume(checkpoint):
                console.print(f"{run.root}: no checkpoint yet, starting from step 0")
        except CheckpointError as error:  # a state that passed the header checks and still does not load
            raise fail(str(error)) from None
        rl.start_trackers()
        total, done = rl.trainer.total_steps, rl.trainer.step
        shown = progress and accelerator.is_main_process
        if shown:
            console.print(f"RL training into {run.root} ({total} steps)", highlight=False)
        with disk_full_exits(), step_progress(total, done, "RL steps", _shown(config), shown) as bar:
            return rl.train(on_step=bar.step, on_phase=bar.phase)


def _shown(config: TapoConfig) -> dict[str, str]:
    """The metrics shown after each step and in the summary: an asynchronous run's show the producer's side too."""
    from tapo.train.step_display import ASYNC_SHOWN

    return {**SHOWN, **ASYNC_SHOWN} if config.trainer.max_staleness else SHOWN


def _summary(rows: list[dict[str, float]], root: Path, shown: dict[str, str]) -> None:
    if not rows:
        console.print(f"{root}: nothing to do (already at trainer.max_steps)")
        return
    table = Table("step", *shown.values(), title=f"training {root}")
    for row in rows[-10:]:
        table.add_row(str(int(row["step"])), *(f"{row.get(k, float('nan')):.3g}" for k in shown))
    console.print(table)
    console.print(f"metrics: {root / 'metrics.jsonl'}  checkpoints: {root / 'checkpoints'}")
