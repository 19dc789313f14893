"""``tapo train --dry-run``: check a run at the scale its config names before it spends GPU hours.

Everything a run needs is built and checked, and every failure is reported at once (exit 1): the data file and its
sources' scorers, the template, the tools (the search index, the code sandbox), the engine's URL, the output
directory, the batch arithmetic over the processes of ``run.accelerate_config``, the token budgets against the
model's context, and the memory per GPU of the real model. Then, in place of the real weights, a tiny random model of
the same architecture family (Qwen2 for the Qwen configs) runs one rollout batch (one prompt group) with the real
tools and one optimizer step, on the CPU or the GPU at hand. Only that step is shrunk (``--dry-run-tokens`` caps
its token budgets, one group of prompts); every check above uses the config's own numbers.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer

from tapo.cli import preflight
from tapo.cli.common import console, fail
from tapo.config import TapoConfig
from tapo.config.precision import autocast_bf16
from tapo.protocol import TAPO, Protocol

SHOWN = ("reward/mean", "tools/calls_per_traj", "actor/loss", "actor/grad_norm", "time/step_s")


class Report:
    """Sections of lines to print and the failures found, each one line."""

    def __init__(self) -> None:
        self.sections: dict[str, list[str]] = {}
        self.failures: list[str] = []

    def add(self, section: str, lines: list[str], failures: Sequence[str] = ()) -> None:
        self.sections.setdefault(section, []).extend(lines)
        self.failures.extend(failures)

    def attempt(self, check: Callable[..., Any], *args: Any) -> Any:
        """Run one preflight check; its failure is recorded, not raised, so the next check still runs."""
        try:
            return check(*args)
        except preflight.PreflightError as error:
            self.failures.append(str(error))
            return None

    def print(self) -> None:
        for section, lines in self.sections.items():
            console.print(f"[bold]{section}[/]")
            for line in lines:
                console.print(f"  {line}", highlight=False, soft_wrap=True)


def _examples(config: TapoConfig, report: Report) -> list[Any]:
    from tapo.data.io import dataset_file_problem, read_examples

    if config.data.train is None:
        report.failures.append("data.train is not set: give a training file")
        return []
    if problem := dataset_file_problem(Path(config.data.train)):
        report.failures.append(f"data.train={config.data.train!r}: {problem}")
        return []
    try:
        examples, loaded = read_examples(config.data.train)
    except ValueError as error:  # DataError: a file that cannot be read, named with its line
        report.failures.append(str(error))
        return []
    report.add("data", [loaded.summary()], [] if examples else [f"data.train={config.data.train!r}: no usable row"])
    return examples


def check_run(config: TapoConfig, gpu_gib: float) -> tuple[Report, list[Any], Any]:
    """Every check of the dry run at the config's own scale; the report, the examples and the architecture."""
    import yaml

    from tapo.models.resolve import read_architecture
    from tapo.prompts.templates import allowed_tools
    from tapo.train import plan

    report = Report()
    examples = _examples(config, report)
    report.attempt(preflight.check_output_dir, config.run.output_dir, "run.output_dir")
    catalog = report.attempt(preflight.check_tool_definitions, config)
    protocol = catalog.protocol if catalog is not None else TAPO
    report.attempt(preflight.check_template, config.data.template, "data.template", protocol)
    if config.rollout.engine.kind != "vllm":  # an in-process vLLM is replaced by transformers for the step
        report.attempt(preflight.check_engine, config)
    enabled = catalog.enabled if catalog is not None else frozenset(config.tools.enabled)
    report.attempt(preflight.check_tools, config, allowed_tools(config.data.template, protocol) & enabled)
    report.attempt(preflight.check_reward, config, {example.data_source for example in examples})
    if Path(config.model.name).expanduser().exists():  # a local checkpoint: its files must read (headers only)
        report.attempt(preflight.check_model, config.model.name)
    try:
        launch = plan.read_launch(config.run.accelerate_config)
    except (OSError, ValueError, yaml.YAMLError) as error:
        report.failures.append(str(error))
        launch = plan.Launch(source=f"run.accelerate_config={config.run.accelerate_config!r} unreadable: one process")
    report.add("launch", [f"{launch.processes} process(es), {launch.kind} ({launch.source})"])
    report.add("batch", *plan.batch_arithmetic(config, launch.processes))
    if examples:
        report.add("batch", [plan.schedule(config, len(examples))])
    architecture = None
    try:
        architecture, origin = read_architecture(config.model.name)
    except (OSError, ValueError, KeyError) as error:
        report.failures.append(f"model.name={config.model.name!r}: {error}")
    if architecture is not None:
        params = f"{architecture.parameters / 1e6:,.1f} M"
        report.add("model", [f"{config.model.name}: {architecture.model_type}, {params} parameters ({origin})"])
        report.add("tokens", *plan.token_budgets(config, architecture.max_position_embeddings))
        on_gpu = config.rollout.engine.kind != "transformers"
        if examples:
            lengths, line = _prompt_lengths(config, examples, protocol)
            report.add("tokens", [line])
        if preflight.cpu_run(config):  # what this machine's CPU run holds, against the memory available here
            available = plan.available_memory()
            longest = min(max(lengths), config.data.max_prompt_tokens) if examples else None
            parts = plan.cpu_memory_estimate(config, architecture, available, longest)
            report.add("memory (estimate, this machine's CPU run)", *plan.cpu_memory_lines(parts, available))
        else:
            estimate = plan.memory_estimate(config, architecture, launch, gpu_gib)
            report.add("memory (estimate, real model)", *plan.memory_lines(estimate, gpu_gib, on_gpu))
    if config.rollout.engine.kind == "vllm" and importlib.util.find_spec("vllm") is None:
        report.add("engine", ["vllm is not installed here: the dry-run step generates with transformers instead"])
    return report, examples, architecture


def _prompt_lengths(config: TapoConfig, examples: list[Any], protocol: Protocol) -> tuple[list[int], str]:
    """How long the rendered prompts are against ``data.max_prompt_tokens`` (longer ones keep their last tokens),
    rendered with the run's ``protocol`` (a user's tools have templates of their own)."""
    from tapo.train.plan import prompt_lengths

    tokenizer, where = preflight.stand_in_tokenizer(config.model.name)
    lengths = prompt_lengths(config, examples, tokenizer, protocol)
    over = sum(length > config.data.max_prompt_tokens for length in lengths)
    return lengths, (
        f"rendered prompts ({len(lengths)} of {len(examples)}, template {config.data.template}, tokenizer {where}): "
        f"longest {max(lengths)} tokens; {over} over data.max_prompt_tokens={config.data.max_prompt_tokens} "
        "would lose their first tokens"
    )


def _shrunk(config: TapoConfig, model_dir: Path, out_dir: Path, tokens: int, on_gpu: bool) -> TapoConfig:
    """The config of the one dry-run step: the stand-in model, one prompt group, at most ``tokens`` per budget."""
    raw = config.model_dump(mode="json")
    group = config.trainer.group_size
    response = min(config.rollout.max_response_tokens, tokens)
    raw["model"]["name"] = str(model_dir)
    raw["run"].update(output_dir=str(out_dir), name="dry-run")
    raw["rollout"].update(
        engine={"kind": "transformers", "batch_size": group},
        max_response_tokens=response,
        max_new_tokens_per_turn=min(config.rollout.max_new_tokens_per_turn, response),
        max_obs_tokens=min(config.rollout.max_obs_tokens, response),
    )
    raw["reward"]["overlong"]["buffer"] = min(config.reward.overlong.buffer, max(1, response // 2))
    raw["trainer"].update(
        prompts_per_step=1,
        mini_batch_size=group,
        micro_batch_size=group,
        max_steps=1,
        max_num_gen_batches=1,
        save_every=1,
        tracker="none",
        bf16=autocast_bf16(config.trainer.bf16) and on_gpu,
    )
    return TapoConfig.model_validate(raw)


def one_step(config: TapoConfig, architecture: Any, examples: list[Any], tokens: int) -> dict[str, float]:
    """One rollout batch with the real tools and one optimizer step of a tiny stand-in; returns the step's row."""
    import torch
    from transformers.utils import logging as transformers_logging

    from tapo.io.runs import RunDir
    from tapo.models.tiny import build_stand_in
    from tapo.train.run import build_rl_run
    from tapo.train.setup import make_accelerator

    transformers_logging.disable_progress_bar()  # a tiny model's "writing shards" bars say nothing
    tokenizer, where = preflight.stand_in_tokenizer(config.model.name)
    # as many layers as the step trains, and one frozen below them, so model.trainable_layers applies as in the run
    trained = config.model.trainable_layers
    layers = 2 if trained is None else min(trained + 1, architecture.num_hidden_layers)
    stand_in = build_stand_in(architecture, tokenizer, layers=layers)
    console.print(
        f"[bold]dry-run step[/]\n  stand-in: {type(stand_in).__name__}, "
        f"{sum(p.numel() for p in stand_in.parameters()) / 1e6:.1f} M parameters, tokenizer: {where}",
        highlight=False,
        soft_wrap=True,
    )
    with tempfile.TemporaryDirectory(prefix="tapo-dry-run-") as tmp:
        model_dir = Path(tmp) / "stand-in"
        stand_in.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        small = _shrunk(config, model_dir, Path(tmp) / "runs", tokens, torch.cuda.is_available())
        accelerator = make_accelerator(small, Path(tmp) / "runs" / "dry-run")
        run = RunDir.create(small)
        with build_rl_run(small, run, accelerator, examples) as rl:
            row = rl.trainer.train_step()
            rl.trainer.save()
    device = f"{accelerator.device}" + (" bf16" if small.trainer.bf16 else " float32")
    console.print(
        f"  device: {device}; {small.trainer.group_size} trajectories of at most {small.rollout.max_response_tokens} "
        "tokens; " + ", ".join(f"{key} {row.get(key, float('nan')):.3g}" for key in SHOWN),
        highlight=False,
        soft_wrap=True,
    )
    return row


def dry_run(config: TapoConfig, gpu_gib: float, tokens: int) -> None:
    """Check everything, print the report, exit 1 listing every failure; else run the one step."""
    report, examples, architecture = check_run(config, gpu_gib)
    report.print()
    if report.failures:
        console.print(f"[bold red]{len(report.failures)} problem(s) would stop this run:[/]")
        for failure in report.failures:
            console.print(f"  [red]x[/] {failure}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    try:
        one_step(config, architecture, examples, tokens)
    except (OSError, RuntimeError, ValueError) as error:
        raise fail(f"the dry-run step failed: {type(error).__name__}: {error}", code=1) from None
    console.print("[bold green]dry run passed[/]: nothing above would stop this run")
