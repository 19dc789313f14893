"""Helpers shared by the CLI commands: config loading with exit code 2 on bad input, console, threads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from tapo.config import ConfigError, TapoConfig, load_config
from tapo.io.progress import console  # the one stderr console: errors, logs and progress share it


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one red line and return the exit to raise (``raise fail(...)``)."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def config_or_exit(config_files: list[str] | None, overrides: list[str] | None) -> TapoConfig:
    """Load the config (over the settings of the environment it names, ``env.name``) or exit with code 2 and one
    line per problem, before any work or any file is written."""
    try:
        config = load_config(config_files or [], overrides or [])
        if config.env.name is None:
            return config
        from tapo.envs.apply import with_environment  # lazy: a config without one imports no environment

        return with_environment(config, config_files, overrides)
    except ConfigError as error:
        raise fail(str(error)) from None
    except ValueError as error:  # EnvError: the environment, one line per problem
        raise fail(str(error)) from None


def env_override(overrides: list[str] | None, env: str | None) -> list[str]:
    """``--env REF`` is the override ``env.name=REF``, after the others (it wins over a file's ``env``)."""
    return [*(overrides or []), *([f"env.name={env}"] if env else [])]


def env_data_or_exit(config: TapoConfig) -> None:
    """Write the rows of the config's environment (if it names one) where its ``data.*`` settings point."""
    if config.env.name is None:
        return
    from tapo.envs.apply import write_data

    try:
        with console.status(f"writing the rows of env {config.env.name}"):
            write_data(config)
    except ValueError as error:  # EnvError, or a DataError of a built-in's files
        raise fail(str(error)) from None


def trained_config_of(model: str) -> Path | None:
    """The config file MODEL was trained with when MODEL is a tapo run directory or checkpoint, else None."""
    from tapo.io.runs import trained_config
    from tapo.models.resolve import resolve_model

    if not Path(model).expanduser().is_dir():
        return None
    try:
        return trained_config(Path(resolve_model(model, auto_pull=False)))
    except FileNotFoundError:  # neither a checkpoint nor a run with one: loading the model says so
        return None


def config_for_model(
    config_files: list[str] | None,
    overrides: list[str] | None,
    model: str,
    use_trained: bool = True,
    env: str | None = None,
) -> tuple[TapoConfig, Path | None]:
    """The config of a command that runs MODEL, and the file it started from: the config MODEL was trained with
    (template, tools, search index, rollout caps) when it is a tapo run or checkpoint, with ``--config`` files and
    overrides on top (they win), ``--env`` last. The rows of its environment (if it names one) are written where
    its ``data.*`` point, so the data and the tools' files exist when the command's checks run. Say which config
    with :func:`say_trained_config` once the command's checks have passed (bad input is one line)."""
    trained = trained_config_of(model) if use_trained else None
    files = [*([str(trained)] if trained else []), *(config_files or [])]
    config = config_or_exit(files, env_override(overrides, env))
    env_data_or_exit(config)
    return config, trained


def say_trained_config(model: str, trained: Path | None) -> None:
    if trained is not None:
        console.print(
            f"[dim]{model}: using the config it was trained with ({trained}); --config files and overrides apply "
            "on top, --no-trained-config ignores it[/]",
            highlight=False,
            soft_wrap=True,
        )


@contextmanager
def disk_full_exits() -> Iterator[None]:
    """A full disk ends the command with its one line (``No space left on device: PATH``), exit code 1."""
    from tapo.io.space import DiskFullError

    try:
        yield
    except DiskFullError as error:
        raise fail(str(error), code=1) from None


def set_threads(requested: int = 0) -> None:
    """Use the cores this process may run on (2 on the reference machine), unless told otherwise."""
    import torch

    threads = requested or len(os.sched_getaffinity(0))
    torch.set_num_threads(max(1, threads))


def engine_or_exit(config: TapoConfig, model: str) -> Any:
    """Set the thread count and load MODEL's generation engine, or exit with code 2 and one line."""
    from tapo.eval.runner import load_engine

    set_threads(config.run.torch_threads)
    try:
        with console.status(f"loading {model}"):
            return load_engine(config, model)
    except (OSError, ValueError, ImportError, RuntimeError) as error:
        raise fail(f"cannot load model {model!r}: {error}") from None


@contextmanager
def run_lock(root: Path, held: bool = True) -> Iterator[None]:
    """Hold ``root``'s lock for the block (``held``: on the main process only; the others write nothing there);
    when another live process holds it, exit with code 2 and one line naming its pid."""
    from tapo.io.runs import RunLock, RunLocked

    if not held:
        yield
        return
    lock = RunLock(root)
    try:
        lock.acquire()
    except RunLocked as error:
        raise fail(str(error)) from None
    try:
        yield
    finally:
        lock.release()
