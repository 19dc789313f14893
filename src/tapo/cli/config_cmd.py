"""``tapo config``: show the resolved configuration before a run, and render the config reference from the schema."""

from __future__ import annotations

from pathlib import Path

import typer

from tapo.cli.common import config_or_exit, fail
from tapo.config.loader import dump_config

app = typer.Typer(help="Inspect configuration files and overrides.", no_args_is_help=True)


@app.command("show")
def show(
    overrides: list[str] = typer.Argument(None, help="dotted overrides, e.g. trainer.lr=5e-6"),
    config: list[str] = typer.Option(None, "--config", "-c", help="YAML file(s), merged left to right"),
) -> None:
    """Print the fully resolved configuration as YAML."""
    typer.echo(dump_config(config_or_exit(config, overrides)), nl=False)


@app.command("docs")
def docs(
    write: Path | None = typer.Option(
        None, "--write", help="rewrite the generated part of this markdown file (docs/configs.md) instead of printing"
    ),
) -> None:
    """Print the config reference rendered from the schema, or update it in a markdown file."""
    from tapo.config.docs import render_config_docs, replace_generated
    from tapo.io.atomic import write_text

    generated = render_config_docs()
    if write is None:
        typer.echo(generated, nl=False)
        return
    try:
        updated = replace_generated(write.read_text(encoding="utf-8"), generated)
    except (OSError, ValueError) as error:
        raise fail(f"{write}: {error}") from None
    write_text(write, updated)
