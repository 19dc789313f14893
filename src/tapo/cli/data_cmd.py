"""``tapo data``: build TAPO-mini, TAPO's published data and the TAPO-easy/hard reconstruction, list the known sets,
check a dataset file."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from tapo.cli.common import config_or_exit, console, fail
from tapo.cli.preflight import check_output_dir, preflight
from tapo.config import TapoConfig
from tapo.config.schema import MINI_SIZES
from tapo.data.published import HUB_ID

app = typer.Typer(help="Build, list and check datasets.", no_args_is_help=True)

MINI = "mini"
PUBLISHED = "tapo"


def _counts_table(title: str, counts: dict[str, dict[str, int]]) -> Table:
    """One row per split, one column per key seen in any split (kinds, levels or data sources)."""
    keys = sorted({key for row in counts.values() for key in row})
    table = Table(*["split", *keys, "total"], title=title)
    for split, row in counts.items():
        table.add_row(split, *(str(row.get(key, 0)) for key in keys), str(sum(row.values())))
    return table


@app.command("build")
def build_cmd(
    name: str = typer.Argument(..., help="mini, tapo (TAPO's published data), tapo-easy or tapo-hard"),
    out: Path = typer.Option(..., "--out", help="output directory"),
    seed: int | None = typer.Option(None, min=0, help="random seed (default: data.mini_seed, or 0)"),
    train: int | None = typer.Option(None, min=0, help="mini: train questions (default: data.mini_train)"),
    validation: int | None = typer.Option(None, min=0, help="mini: validation questions"),
    test: int | None = typer.Option(None, min=0, help="mini: test questions"),
    no_index: bool = typer.Option(False, "--no-index", help="mini: do not build the BM25 search index"),
    size: int | None = typer.Option(None, min=1, help="tapo-easy/hard: total rows (default: 60000 / 18000)"),
    source_dir: Path | None = typer.Option(
        None, help="tapo: a copy of the published DIR/{train,test}.parquet; tapo-easy/hard: <dir>/<key>/<split>.jsonl"
    ),
    data: str | None = typer.Option(None, help="tapo: hf:OWNER/NAME or a directory (default: hf:Goer17/TAPO)"),
    config: list[str] = typer.Option(None, "--config", "-c", help="YAML file(s) whose data section gives defaults"),
) -> None:
    """Build a dataset into OUT and print its counts by split."""
    from tapo.data.builders import RECIPES

    if name not in (MINI, PUBLISHED) and name not in RECIPES:
        raise fail(f"unknown dataset {name!r}; choose one of: {', '.join([MINI, PUBLISHED, *RECIPES])}")
    if data is not None and source_dir is not None:
        raise fail("--data and --source-dir both name the published data: give one")
    loaded = config_or_exit(config, None)
    with preflight():  # a read-only or misplaced --out: one line now, not a traceback after the generation
        check_output_dir(out, "--out")
    start = time.perf_counter()
    if name == PUBLISHED:
        _build_published(loaded, source_dir or data or f"hf:{HUB_ID}", out)
        console.print(f"wrote {out} in {time.perf_counter() - start:.1f} s (manifest.json has the counts and hashes)")
        return
    data = loaded.data
    if name == MINI:
        from tapo.data.mini import MiniSizes, build_mini

        sizes = MiniSizes(
            train=data.mini_train if train is None else train,
            validation=data.mini_validation if validation is None else validation,
            test=data.mini_test if test is None else test,
        )
        seed = data.mini_seed if seed is None else seed
        try:
            with console.status("generating TAPO-mini and indexing its corpus"):
                manifest = build_mini(out, seed=seed, sizes=sizes, index=not no_index)
        except OSError as error:  # the directory became unwritable, or the disk filled, while it was written
            raise fail(f"cannot write {out}: {error}", code=1) from None
        counts = manifest["counts"]
        console.print(_counts_table("questions by kind", {split: row["kind"] for split, row in counts.items()}))
        console.print(_counts_table("questions by level", {split: row["level"] for split, row in counts.items()}))
        console.print(f"{manifest['passages']} passages in corpus.jsonl" + ("" if no_index else ", indexed in index/"))
    else:
        from tapo.data.builders import build_dataset
        from tapo.data.io import DataError

        source = source_dir if source_dir is not None else data.source_dir
        try:
            with console.status(f"building {name}") as status:
                manifest = build_dataset(
                    name, out, source, seed=seed or 0, size=size, progress=lambda text: status.update(text)
                )
        except (DataError, ValueError) as error:
            raise fail(str(error), code=1) from None
        console.print(_counts_table(f"{name} rows by data source", manifest["counts"]))
        if manifest["shortfall_filled_by_generated"]:
            console.print(f"[yellow]{manifest['shortfall_filled_by_generated']} rows the sources lacked were generated")
    console.print(f"wrote {out} in {time.perf_counter() - start:.1f} s (manifest.json has the counts and hashes)")


def _build_published(config: TapoConfig, location: str | Path, out: Path) -> None:
    """TAPO's published splits into OUT, each source checked against the scorer ``reward.preset=tapo`` gives it."""
    from tapo.data.io import DataError
    from tapo.data.published import build_published
    from tapo.rewards.registry import ScorerRegistry

    registry = ScorerRegistry(config.reward.model_copy(update={"preset": "tapo"}))
    try:
        with console.status(f"reading {location}"):
            manifest = build_published(location, out, registry.name_for)
    except (DataError, ValueError, OSError) as error:  # datasets raises FileNotFoundError/ValueError on bad files
        raise fail(str(error), code=1) from None
    finally:
        registry.close()
    counts = manifest["counts"]
    table = Table("data_source", "scorer (reward.preset=tapo)", *counts, title="TAPO's published data")
    for source, scorer in manifest["scorers"].items():
        table.add_row(source, scorer, *(str(row.get(source, 0)) for row in counts.values()))
    console.print(table)
    read, kept = sum(manifest["read"].values()), sum(manifest["kept"].values())
    console.print(f"{kept} of {read} rows kept", highlight=False)
    for line in manifest["report"]:
        console.print(line, highlight=False, soft_wrap=True)


@app.command("list")
def list_cmd() -> None:
    """Show the datasets this project builds and the benchmarks it loads."""
    from tapo.data.benchmarks import BENCHMARKS
    from tapo.data.builders import RECIPES

    built = Table("name", "rows", "sources", title="built by `tapo data build`")
    built.add_row(MINI, "/".join(map(str, MINI_SIZES.values())), "generated offline (fictional world + BM25 index)")
    built.add_row(PUBLISHED, "as published", f"hf:{HUB_ID} (TAPO's own train/test; --source-dir for a local copy)")
    for recipe in RECIPES.values():
        parts = [f"{source.hub_id} ({count})" for source, count in recipe.sources]
        parts += [f"{kind} ({count})" for kind, count in recipe.generated]
        built.add_row(recipe.name, str(recipe.size), ", ".join(parts))
    console.print(built)
    benchmarks = Table("benchmark", "hub id", "config", "split", "data_source", title="evaluation sets")
    for name, source in BENCHMARKS.items():
        benchmarks.add_row(name, source.hub_id, source.config or "-", source.split, source.data_source)
    console.print(benchmarks)


@app.command("check")
def check_cmd(
    path: Path = typer.Argument(..., help="a dataset file (.jsonl or .parquet)"),
    split: str | None = typer.Option(None, help="only rows of this split"),
    strict: bool = typer.Option(False, help="fail on the first repaired or bad row"),
    show: int = typer.Option(10, min=0, help="problems to print"),
) -> None:
    """Validate a dataset file against the row schema and report what would be repaired or dropped."""
    from tapo.data.io import DataError, read_examples

    try:
        _, report = read_examples(path, split, strict=strict)
    except DataError as error:
        raise fail(str(error), code=1) from None
    for problem in report.problems[:show]:
        console.print(problem, highlight=False, soft_wrap=True)
    console.print(report.summary(), highlight=False, soft_wrap=True)
    if report.dropped:
        raise typer.Exit(1)
