"""``tapo report RUN_DIR``: a self-contained HTML report for a training run, an evaluation output dir or the main
job's directory, whose summary.md / summary.json it rebuilds first (the job's report stage is this command)."""

from __future__ import annotations

from pathlib import Path

import typer

from tapo.cli.common import config_or_exit, console, fail


def report_command(
    run_dir: Path = typer.Argument(..., help="a training run dir, a `tapo eval` output dir or a pipeline job dir"),
    out: Path | None = typer.Option(None, "--out", "-o", help="report dir (default: RUN_DIR/report)"),
    trajectories: int | None = typer.Option(
        None, "--trajectories", "-t", min=0, help="sampled trajectories shown (default: eval.report_trajectories)"
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="which trajectories are sampled"),
    config: list[str] = typer.Option(None, "--config", "-c", help="YAML file(s), merged left to right"),
) -> None:
    """Write RUN_DIR/report/report.html: training curves, evaluation tables, plots and sampled trajectories.

    In a pipeline job's directory (one with arms.json), first rewrite summary.md and summary.json from its
    finished evaluations."""
    from tapo.eval.report import build_report
    from tapo.pipeline.summary import rebuild

    cfg = config_or_exit(config, [])
    if not run_dir.is_dir():
        raise fail(f"{run_dir} is not a directory")
    n = trajectories if trajectories is not None else cfg.eval.report_trajectories
    try:
        with console.status(f"collecting the results of {run_dir}"):
            rebuilt = rebuild(run_dir) is not None
        if rebuilt:
            console.print(f"results written to {run_dir / 'summary.md'} and {run_dir / 'summary.json'}")
        with console.status(f"building the report of {run_dir}"):
            path = build_report(run_dir, out, n_trajectories=n, seed=seed)
    except (FileNotFoundError, ValueError, KeyError) as error:
        raise fail(str(error)) from None
    console.print(f"report written to {path}")
