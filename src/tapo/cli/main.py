"""Entry point of the ``tapo`` command: each subcommand lives in its own module and is mounted here."""

from __future__ import annotations

import logging

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


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log at debug level"),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
