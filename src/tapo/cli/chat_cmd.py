"""``tapo chat``: ask a model questions and watch its trace (reasoning, tool calls, tool outputs, answer).

The session (:mod:`tapo.rollout.chat`) runs each question through the same rollout as training and evaluation,
with the configured engine and real tools. ``--save`` appends each trajectory to a ``trajectories.jsonl`` in the
row schema the trainer and the evaluator write (no example: chat has no golds).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from tapo.cli.common import config_for_model, console, engine_or_exit, fail, say_trained_config
from tapo.cli.preflight import check_eval_model, check_isolation, check_tool_definitions, preflight
from tapo.io.atomic import append_jsonl
from tapo.rollout.trace import TraceRenderer

# The trace is the command's output: stdout (progress and errors go to stderr through ``console``).
stdout = Console()


def _questions(question: str | None):
    """The one-shot question, or questions read at a prompt until an empty line or end of input (Ctrl-D)."""
    if question is not None:
        yield question
        return
    while True:
        try:
            line = stdout.input("[bold]question>[/] ").strip()
        except EOFError:
            return
        if not line:
            return
        yield line


def chat(
    overrides: list[str] = typer.Argument(None, help="dotted config overrides, e.g. rollout.max_turns=2"),
    model: str = typer.Option(
        ..., "--model", "-m", help="store name, checkpoint dir, run dir, tiny-random, or openai:URL#MODEL"
    ),
    question: str | None = typer.Option(None, "--question", "-q", help="ask once and exit (default: a prompt loop)"),
    template: str | None = typer.Option(None, "--template", "-t", help="prompt template name or file"),
    env: str | None = typer.Option(None, "--env", help="environment (module:name, entry point): its template, tools"),
    sample: bool = typer.Option(False, "--sample", help="sample (rollout.temperature, run.seed) instead of greedy"),
    force: list[str] = typer.Option(
        None, "--force", help="text of a forced first turn, e.g. '<search>x</search>' (repeat for more turns)"
    ),
    config: list[str] = typer.Option(
        None, "--config", "-c", help="YAML file(s), merged left to right over the config MODEL was trained with"
    ),
    use_trained: bool = typer.Option(
        True, "--trained-config/--no-trained-config", help="start from the config a tapo run/checkpoint MODEL carries"
    ),
    save: Path | None = typer.Option(None, "--save", help="append each trajectory to this trajectories.jsonl"),
) -> None:
    """Chat with MODEL under the TAPO protocol: the trace streams with tool calls, outputs and the answer marked."""
    from tapo.prompts.templates import allowed_tools

    cfg, trained = config_for_model(config, overrides, model, use_trained, env)
    with preflight():  # a missing run or a damaged model: one line, before the hub is asked or anything loads
        check_eval_model(cfg, model)
    name = template or cfg.data.template
    with preflight():
        catalog = check_tool_definitions(cfg)
    try:
        allowed = allowed_tools(name, catalog.protocol)
    except (KeyError, ValueError, OSError) as error:
        raise fail(f"--template {name!r}: {error}") from None
    with preflight():
        check_isolation(cfg, allowed & catalog.enabled)
    say_trained_config(model, trained)
    from tapo.rollout.chat import ChatSession, chat_tools

    engine = engine_or_exit(cfg, model)
    try:
        tools = chat_tools(catalog, allowed, lambda warning: console.print(f"[yellow]{warning}[/]", highlight=False))
    except (ValueError, OSError) as error:
        raise fail(f"cannot start the tools: {error}") from None
    with ChatSession(cfg, engine, tools, catalog.protocol) as session:
        for text in _questions(question):
            renderer = TraceRenderer(stdout, engine.tokenizer, catalog.protocol)
            trajectory = session.ask(text, name, renderer, greedy=not sample, force=force or [])
            if save is not None:
                append_jsonl(save, [trajectory.to_row()])
