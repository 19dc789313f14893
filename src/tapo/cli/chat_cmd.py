"""``tapo chat``: ask a model questions and watch its trace (reasoning, tool calls, tool outputs, answer).

The same rollout as training and evaluation runs each question, with the configured engine and real
tools, so what is shown is exactly what the policy does under the protocol. Each question is a fresh
conversation (the protocol is one question per trajectory). ``--save`` appends each trajectory to a
``trajectories.jsonl`` in the row schema the trainer and the evaluator write (no example: chat has no golds).
Every question runs on the session's one event loop, the one the tools' clients live on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from tapo.cli.common import config_for_model, console, engine_or_exit, fail, say_trained_config
from tapo.cli.preflight import check_isolation, preflight
from tapo.config import TapoConfig
from tapo.io.atomic import append_jsonl
from tapo.io.event_loop import EventLoopThread
from tapo.records import Trajectory
from tapo.rollout.trace import TraceRenderer

# The trace is the command's output: stdout (progress and errors go to stderr through ``console``).
stdout = Console()


def _tools(cfg: TapoConfig, allowed: frozenset[str]) -> Any:
    """The template's tools that the config enables; a tool that cannot start here (search without an index)
    is left out with a warning, so chat works out of the box with the code tool alone."""
    from tapo.tools.registry import build_tools

    wanted = set(cfg.tools.enabled) & allowed
    try:
        return build_tools(cfg.tools, enabled=wanted)
    except (ValueError, OSError) as error:
        if "search" not in wanted:
            raise fail(f"cannot start the tools: {error}") from None
        console.print(f"[yellow]search is off: {error}[/]", highlight=False, soft_wrap=True)
        return build_tools(cfg.tools, enabled=wanted - {"search"})


def _ask(
    cfg: TapoConfig,
    engine: Any,
    tools: Any,
    loop: EventLoopThread,
    question: str,
    template: str,
    greedy: bool,
    force: list[str],
) -> Trajectory:
    from tapo.engines.forced import ForcedPrefixEngine
    from tapo.engines.hf import HFEngine
    from tapo.prompts.templates import allowed_tools, render_prompt
    from tapo.rollout.agent_loop import RolloutRunner

    renderer = TraceRenderer(stdout, engine.tokenizer)
    if isinstance(engine, HFEngine):  # the transformers engine streams tokens; others show each turn when done
        engine.on_tokens = renderer.stream
    if force:
        engine = ForcedPrefixEngine(engine, force)
    runner = RolloutRunner(engine, tools, cfg.rollout, on_step=renderer, loop=loop)
    prompt = render_prompt(engine.tokenizer, question, template)
    params = runner.sampling_params(seed=None if greedy else cfg.run.seed, greedy=greedy)
    allowed = allowed_tools(template) & frozenset(tools.names)  # the corrective message names only these
    trajectory = runner.run([prompt], [None], params, allowed)[0]
    renderer.summary(trajectory)
    return trajectory


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

    cfg, trained = config_for_model(config, overrides, model, use_trained)
    name = template or cfg.data.template
    try:
        allowed = allowed_tools(name)
    except (KeyError, ValueError, OSError) as error:
        raise fail(f"--template {name!r}: {error}") from None
    with preflight():
        check_isolation(cfg, allowed & set(cfg.tools.enabled))
    say_trained_config(model, trained)
    engine = engine_or_exit(cfg, model)
    tools = _tools(cfg, allowed)
    loop = EventLoopThread("tapo-chat")
    try:
        for text in _questions(question):
            trajectory = _ask(cfg, engine, tools, loop, text, name, greedy=not sample, force=force or [])
            if save is not None:
                append_jsonl(save, [trajectory.to_row()])
    finally:
        loop.run(tools.aclose())
        loop.close()
        engine.close()
