"""Entry point of the ``tapo`` command: each subcommand lives in its own module and is mounted here."""

from __future__ import annotations

import logging
import os

import typer

from tapo import __version__
from tapo.cli import (
    chat_cmd,
    config_cmd,
    data_cmd,
    eval_cmd,
    index_cmd,
    model_cmd,
    pipeline_cmd,
    report_cmd,
    reward_cmd,
    serve_cmd,
    sft_cmd,
    train_cmd,
)
from tapo.cli.common import console
from tapo.io.allocator import fix_mmap_threshold
from tapo.io.onednn import bound_onednn_caches

app = typer.Typer(
    name="tapo",
    help="TAPO: train and evaluate language models that reason with a search engine and a Python interpreter.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Subcommand groups, one module each (keep this list sorted by name).
app.command("chat")(chat_cmd.chat)
app.add_typer(config_cmd.app, name="config")
app.add_typer(data_cmd.app, name="data")
app.command("eval")(eval_cmd.eval_command)
app.add_typer(index_cmd.app, name="index")
app.add_typer(model_cmd.app, name="model")
app.add_typer(pipeline_cmd.app, name="pipeline")
app.command("report")(report_cmd.report_command)
app.add_typer(reward_cmd.app, name="reward")
app.add_typer(serve_cmd.app, name="serve")
app.command("sft")(sft_cmd.sft)
app.command("train")(train_cmd.train)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tapo {__version__}")
        raise typer.Exit()


def _log_to_console(verbose: bool) -> None:
    """Log records (and Python warnings) go to the shared stderr console, so they print above a live progress
    display instead of inside its line."""
    from rich.logging import RichHandler

    # transformers' and the hub's tqdm bars ("Loading weights", "Writing model shards") would draw over the live
    # display; the commands show their own status. Read once when they are imported, which happens after this.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if logging.getLogger().handlers:  # logging is set up already (a test harness): leave it as it is
        return
    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler])
    logging.captureWarnings(True)


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log at debug level"),
) -> None:
    _log_to_console(verbose)
    fix_mmap_threshold()  # before any tensor: freed tensors then leave the process (tapo.io.allocator)
    bound_onednn_caches()  # before any bf16 matmul: memory no longer grows with each new shape (tapo.io.onednn)
