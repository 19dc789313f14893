"""``tapo reward score``: the reward of each row of a JSONL file, so a reward can be debugged before GPU hours."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import track
from rich.table import Table

from tapo.cli.common import config_or_exit, console, fail

app = typer.Typer(help="Debug rewards: score responses against gold answers.", no_args_is_help=True)

MAX_REPORTED_ERRORS = 20


def _rows_table(results: list[dict[str, Any]], show: int) -> Table:
    table = Table(title=f"reward breakdown ({min(show, len(results))} of {len(results)} rows)")
    for column in ("line", "source", "scorer", "answer", "score", "penalty", "total", "acc", "format"):
        numeric = column in ("line", "score", "penalty", "total")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True, overflow="ellipsis")
    for row in results[:show]:
        answer = row["answer"] if row["answer"] is not None else "—"
        table.add_row(
            str(row["line"]),
            row["data_source"],
            row["scorer"],
            answer if len(answer) <= 40 else answer[:39] + "…",
            f"{row['score']:.3f}",
            f"{row['penalty']:.3f}",
            f"{row['total']:.3f}",
            "[green]yes[/]" if row["acc"] else "no",
            "ok" if row["format_ok"] else f"[red]{row['format_error']}[/]",
        )
    return table


def _summary_table(results: list[dict[str, Any]]) -> Table:
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in results:
        by_source[row["data_source"]].append(row)
    table = Table(title="summary by data source")
    for column in ("data source", "rows", "format ok", "mean score", "acc", "mean total"):
        table.add_column(column, justify="left" if column == "data source" else "right")
    for source, rows in sorted(by_source.items()):
        n = len(rows)
        table.add_row(
            source,
            str(n),
            f"{sum(r['format_ok'] for r in rows) / n:.1%}",
            f"{sum(r['score'] for r in rows) / n:.3f}",
            f"{sum(r['acc'] for r in rows) / n:.1%}",
            f"{sum(r['total'] for r in rows) / n:.3f}",
        )
    return table


@app.command("score")
def score(
    file: Path = typer.Argument(
        ..., help='JSONL rows {"response", "golds", "data_source"} (+ optional "n_model_tokens", "tool_calls")'
    ),
    overrides: list[str] = typer.Argument(None, help="dotted overrides, e.g. reward.custom_scorers={nq: nq}"),
    out: Path | None = typer.Option(None, "--out", "-o", help="write one JSON breakdown (or error) per input line"),
    config: list[str] = typer.Option(None, "--config", "-c", help="YAML file(s), merged left to right"),
    show: int = typer.Option(50, "--show", min=0, help="rows shown in the table (the summary covers all)"),
) -> None:
    """Score every row of FILE and print its reward breakdown; malformed rows are reported by line number."""
    from tapo.io.atomic import write_jsonl
    from tapo.rewards.compute import RewardFunction
    from tapo.rewards.registry import RewardError
    from tapo.rewards.rows import parse_row

    cfg = config_or_exit(config, overrides)
    if not file.is_file():
        raise fail(f"file not found: {file}")
    try:
        reward = RewardFunction(cfg.reward, cfg.rollout.max_response_tokens)
    except RewardError as error:
        raise fail(str(error)) from None
    results: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
    with reward:
        for number, line in track(list(enumerate(lines, 1)), description="scoring", console=console, transient=True):
            if not line.strip():
                continue
            try:
                row = parse_row(line)
                breakdown = reward(row.response, row.golds, row.data_source, row.n_model_tokens, row.tool_calls)
            except ValueError as error:  # a malformed row, an unknown source, a bad custom scorer
                errors.append({"line": number, "error": str(error)})
                continue
            results.append({"line": number, "data_source": row.data_source, **breakdown.to_dict()})
    if out is not None:
        write_jsonl(out, sorted(results + errors, key=lambda r: r["line"]))
    stdout = Console(soft_wrap=False)
    if results:
        if show:
            stdout.print(_rows_table(results, show))
        stdout.print(_summary_table(results))
    for error in errors[:MAX_REPORTED_ERRORS]:
        console.print(f"[yellow]line {error['line']}:[/] {error['error']}", highlight=False, soft_wrap=True)
    if len(errors) > MAX_REPORTED_ERRORS:
        console.print(f"[yellow]… and {len(errors) - MAX_REPORTED_ERRORS} more malformed rows[/]")
    if errors:
        console.print(f"[red]{len(errors)} malformed row(s)[/], {len(results)} scored")
        raise typer.Exit(1)
