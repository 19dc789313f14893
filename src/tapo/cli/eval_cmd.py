"""``tapo eval``: evaluate a model under the TAPO protocol in one tool mode, or every one (``--ablate``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console

from tapo.cli.common import config_for_model, console, engine_or_exit, fail, say_trained_config
from tapo.cli.preflight import (
    check_engine,
    check_eval_model,
    check_eval_templates,
    check_output_dir,
    check_reward,
    check_tool_definitions,
    check_tools,
    preflight,
)
from tapo.eval.modes import mode_tools
from tapo.eval.result_dir import EvalResult, ablation_table
from tapo.eval.tables import ADAPTIVE_HEADERS, adaptive_table, metric_table, to_rich
from tapo.io.progress import LiveProgress

# Metric tables have ~16 columns: when piped, do not squeeze them into 80 characters.
stdout = Console(width=None if sys.stdout.isatty() else 220)


def _callback(progress: LiveProgress, mode: str, questions: int, samples: int) -> Callable[[int, int, float], None]:
    """A progress task for one tool mode, its total known from the start, counting finished trajectories; its ETA
    follows the share of the engine's work done (``work``, in response tokens: the count moves in bursts, see
    time_left)."""
    unit = "questions" if samples == 1 else f"trajectories ({samples} per question)"
    task = progress.add_task(f"evaluate · tools {mode} · {unit}", total=questions * samples, concurrent=True)
    return lambda done, total, work: progress.update(task, completed=done, total=total, work=work)


def _show(result: EvalResult) -> None:
    headers, rows = metric_table(result.metrics)
    title = f"{result.model} on {result.data} · tools {result.tools_mode} ({result.template}) · K={result.samples}"
    stdout.print(to_rich(headers, rows, title=title))
    adaptive = adaptive_table(result.metrics)
    if adaptive:
        stdout.print(to_rich(ADAPTIVE_HEADERS, adaptive, title="adaptive tool use (by meta.needs)"))


def eval_command(
    overrides: list[str] = typer.Argument(None, help="dotted config overrides, e.g. rollout.max_turns=2"),
    model: str = typer.Option(..., "--model", "-m", help="store name, checkpoint dir, run dir, or openai:URL#MODEL"),
    data: str | None = typer.Option(
        None, "--data", "-d", help="JSONL/parquet file or benchmark name (nq, gsm8k, ...); default: data.test"
    ),
    env: str | None = typer.Option(
        None, "--env", help="environment (module:name, entry point, tapo-mini): its test split, tools and rewards"
    ),
    tools: str | None = typer.Option(None, "--tools", help="all | search | code | none (default: eval.tools)"),
    samples: int | None = typer.Option(
        None, "--samples", "-k", min=1, help="samples per question (default: eval.samples)"
    ),
    greedy: bool | None = typer.Option(
        None, "--greedy/--sample", help="greedy decoding (default: eval.greedy when K=1, sampling when K>1)"
    ),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="first N questions only"),
    out: Path | None = typer.Option(None, "--out", "-o", help="output dir (default: <run.output_dir>/eval/...)"),
    ablate: bool = typer.Option(
        False, "--ablate", help="run every tool mode (all, each tool, none) and add one table over them"
    ),
    config: list[str] = typer.Option(
        None, "--config", "-c", help="YAML file(s), merged left to right over the config MODEL was trained with"
    ),
    use_trained: bool = typer.Option(
        True, "--trained-config/--no-trained-config", help="start from the config a tapo run/checkpoint MODEL carries"
    ),
) -> None:
    """Evaluate MODEL on DATA with the training rollout and rewards; writes results.json/.md and trajectories."""
    from tapo.eval.runner import EvalSetup, default_out_dir, evaluate, evaluate_ablation, load_eval_data

    cfg, trained = config_for_model(config, overrides, model, use_trained, env)
    data = data or cfg.data.test
    if data is None:
        raise fail("--data is not given and data.test is not set: name a file, a benchmark or an environment (--env)")
    mode = tools or cfg.eval.tools
    with preflight():  # the run's tools (a user's, MCP servers'): their names are tool modes too
        catalog = check_tool_definitions(cfg)
    all_modes = mode_tools(catalog.protocol)
    if mode not in all_modes:
        raise fail(f"--tools {mode!r}: choose one of {', '.join(all_modes)}")
    k = samples or cfg.eval.samples
    out_dir = out or default_out_dir(cfg, model, data, "ablation" if ablate else mode)
    with preflight():  # the model, then where the results go: a whole evaluation must not be lost to it at the end
        check_eval_model(cfg, model)
        check_output_dir(out_dir, "--out")
    try:
        setup = EvalSetup(k, greedy if greedy is not None else (cfg.eval.greedy and k == 1), cfg.eval.seed)
        examples = load_eval_data(data, limit or cfg.eval.limit, cfg.eval.benchmark_dir)
    except (ValueError, FileNotFoundError) as error:
        raise fail(str(error)) from None
    modes = tuple(all_modes) if ablate else (mode,)
    with preflight():  # everything else the evaluation acts on, before the model loads
        check_eval_templates(cfg.data.template, modes, catalog.protocol)
        check_tools(cfg, set().union(*(all_modes[m] for m in modes)))
        check_engine(cfg)
        check_reward(cfg, {ex.data_source for ex in examples})
    say_trained_config(model, trained)
    engine = engine_or_exit(cfg, model)
    args = (setup.samples, setup.greedy, limit or cfg.eval.limit)
    questions = len(examples)
    try:
        with LiveProgress() as progress:
            if ablate:
                results = evaluate_ablation(
                    cfg,
                    model,
                    data,
                    *args,
                    out_dir,
                    modes=modes,
                    engine=engine,
                    progress=lambda m: _callback(progress, m, questions, setup.samples),
                    catalog=catalog,
                )
            else:
                shown = _callback(progress, mode, questions, setup.samples)
                results = [
                    evaluate(cfg, model, data, mode, *args, out_dir, engine=engine, progress=shown, catalog=catalog)
                ]
    except (RuntimeError, ValueError, OSError) as error:
        raise fail(f"evaluation failed: {error}", code=1) from None
    for result in results:
        _show(result)
    if ablate:
        headers, rows = ablation_table(results)
        stdout.print(to_rich(headers, rows, title=f"tool ablation: {model} on {data}"))
    console.print(f"results written to {out_dir}")
