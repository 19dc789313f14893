"""``tapo config``: show the resolved configuration, so users can check files and overrides before a run."""

from __future__ import annotations

import typer

from tapo.cli.common import config_or_exit
from tapo.config.loader import dump_config

app = typer.Typer(help="Inspect configuration files and overrides.", no_args_is_help=True)


@app.command("show")
def show(
    overrides: list[str] = typer.Argument(None, help="dotted overrides, e.g. trainer.lr=5e-6"),
    config: list[str] = typer.Option(None, "--config", "-c", help="YAML file(s), merged left to right"),
) -> None:
    """Print the fully resolved configuration as YAML."""
    typer.echo(dump_config(config_or_exit(config, overrides)), nl=False)
