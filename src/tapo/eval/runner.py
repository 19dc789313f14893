"""Evaluation with the training stack: the same prompt rendering, rollout loop, tools and reward function.

``evaluate`` loads a model (a store name, a checkpoint or run dir, or ``openai:URL#MODEL``) and a data set
(a JSONL/parquet file or a benchmark name), runs K samples per question in one tool mode, scores them and
writes ``results.json``, ``results.md`` and ``trajectories.jsonl`` atomically. ``evaluate_ablation`` runs
one model over every tool mode of its tools (TAPO's four, one more per tool a user adds) and adds one table with a
row per mode.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any

from tapo.config.schema import TapoConfig
from tapo.data.schema import Example
from tapo.engines.base import GenerationEngine
from tapo.engines.kv_cache import KVStats
from tapo.eval.metrics import accuracy_by_searches, compute_metrics
from tapo.eval.modes import mode_tools, template_for_mode
from tapo.eval.result_dir import EvalResult, save_ablation
from tapo.eval.samples import to_records
from tapo.io.event_loop import EventLoopThread
from tapo.protocol import TAPO, Protocol
from tapo.records import Trajectory
from tapo.rewards.compute import RewardFunction
from tapo.rollout.agent_loop import RolloutRunner

if TYPE_CHECKING:
    from tapo.tools.catalog import ToolCatalog

# progress(done, total, work): trajectories finished of those the evaluation runs, and the share of its engine work
# done (work_share)
Progress = Callable[[int, int, float], None]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSetup:
    """How one evaluation samples: K samples per question, greedy or at the rollout temperature."""

    samples: int = 1
    greedy: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, got {self.samples}")
        if self.greedy and self.samples > 1:
            raise ValueError(f"greedy decoding gives {self.samples} identical samples: sample (no --greedy) or use 1")


def load_eval_data(spec: str, limit: int | None = None, benchmark_dir: str | None = None) -> list[Example]:
    """Examples from a JSONL/parquet file, or from a known benchmark (local copy in ``benchmark_dir`` or hub)."""
    from tapo.data.benchmarks import BENCHMARKS, load_benchmark
    from tapo.data.io import load_examples

    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    path = Path(spec).expanduser()
    if path.is_file():
        examples = load_examples(path)
    elif spec in BENCHMARKS:
        examples = load_benchmark(spec, benchmark_dir, limit)
    else:
        raise FileNotFoundError(f"{spec!r} is neither a data file nor a benchmark ({', '.join(BENCHMARKS)})")
    if not examples:
        raise ValueError(f"{spec}: no usable rows")
    return examples[:limit]


def load_engine(config: TapoConfig, model_name: str) -> GenerationEngine:
    """A generation engine for a local model (the configured backend) or an OpenAI-compatible endpoint.

    For ``openai:URL#MODEL`` prompts are rendered and text is tokenized with the tokenizer of
    ``config.model.name``; with ``eval.openai.api=chat`` the server applies its own chat template.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tapo.models.resolve import resolve_model

    if model_name.startswith("openai:"):
        from tapo.engines.openai_compat import OpenAICompatEngine

        tokenizer = AutoTokenizer.from_pretrained(resolve_model(config.model.name))
        endpoint = config.eval.openai
        return OpenAICompatEngine.from_spec(
            model_name,
            tokenizer,
            api_key_env=endpoint.api_key_env,
            api=endpoint.api,
            timeout_s=endpoint.timeout_s,
            max_retries=endpoint.max_retries,
            max_concurrency=endpoint.max_concurrency,
        )
    from tapo.engines.factory import build_engine

    path = resolve_model(model_name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if config.rollout.engine.kind != "transformers":  # vLLM loads the checkpoint itself: no second copy in memory
        return build_engine(config.rollout, path, tokenizer)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=config.model.dtype).eval()
    return build_engine(config.rollout, model, tokenizer)


def run_rollouts(
    runner: RolloutRunner,
    examples: Sequence[Example],
    template: str,
    setup: EvalSetup,
    allowed: frozenset[str],
    progress: Progress | None = None,
    max_prompt_tokens: int | None = None,
) -> list[Trajectory]:
    """K trajectories per example in one rollout call (the engine batches them as they come), reporting
    ``progress(done, total, work)`` after each model turn and each tool output of any trajectory
    (:func:`work_share`). The engine advances a batch's trajectories turn by turn together, so most finish near the
    end and their count says little of the pace until then; the share of the engine's work done moves from the first
    batch on (:func:`tapo.io.progress.time_left`).

    A prompt over ``max_prompt_tokens`` keeps its last tokens, as in training (a 50 MB question took 3 GB uncut);
    how many were cut is one warning line."""
    from tapo.prompts.templates import render_prompt

    prompts = [render_prompt(runner.tokenizer, ex.question, template, runner.protocol) for ex in examples]
    if max_prompt_tokens is not None:
        cut = sum(len(prompt) > max_prompt_tokens for prompt in prompts)
        if cut:
            log.warning(
                "%d of %d prompts are over data.max_prompt_tokens=%d: cut to their last %d tokens, as training does",
                cut, len(prompts), max_prompt_tokens, max_prompt_tokens,
            )  # fmt: skip
            prompts = [prompt[-max_prompt_tokens:] for prompt in prompts]
    jobs = [(p, ex) for p, ex in zip(prompts, examples, strict=True) for _ in range(setup.samples)]
    params = runner.sampling_params(seed=setup.seed, greedy=setup.greedy)
    running: dict[int, Progressed] = {}  # id of each running trajectory -> where it stands
    ended: list[Progressed] = []
    pending = False

    def report() -> None:
        nonlocal pending
        pending = False
        if progress is not None:
            progress(len(ended), len(jobs), work_share(ended, running.values(), len(jobs)))

    def soon() -> None:
        """Report once the trajectories the same engine batch resumed have all counted their turn: one at a time,
        the first would report 1 of 64 turns done and the plain progress line could print that."""
        nonlocal pending
        if not pending:
            pending = True
            asyncio.get_running_loop().call_soon(report)

    def turned(trajectory: Trajectory, model_turns: int) -> None:
        running[id(trajectory)] = Progressed.of(trajectory, model_turns)
        soon()

    def finished(trajectory: Trajectory) -> None:
        ended.append(running.pop(id(trajectory)))  # its last turn or insertion counted itself first
        soon()

    report()
    trajectories = runner.run(
        [p for p, _ in jobs], [e for _, e in jobs], params, allowed, on_done=finished, on_turn=turned
    )
    report()  # every one finished: a report still pending on the loop says the same
    return trajectories


@dataclass(frozen=True)
class Progressed:
    """Where one trajectory of an evaluation stands, in response tokens: ``done`` up to the end of its last model
    turn, ``inserted`` after it (a tool's output or the corrective message, which the engine prefills with the next
    turn; 0 while a tool runs), its model ``turns`` and the tokens the model ``written`` in them."""

    done: int
    inserted: int
    turns: int
    written: int

    @property
    def length(self) -> int:
        return self.done + self.inserted

    @classmethod
    def of(cls, trajectory: Trajectory, model_turns: int) -> Progressed:
        mask = trajectory.model_mask
        inserted = next((i for i, written in enumerate(reversed(mask)) if written), len(mask))  # after the last turn
        return cls(len(mask) - inserted, inserted, model_turns, sum(mask))


def work_share(ended: Sequence[Progressed], running: Collection[Progressed], total: int) -> float:
    """The share of an evaluation's engine work done, counted in response tokens: the model's own and the tool
    outputs it reads (the prompt's template is shared, so the engine's prefix store holds it after the first batch).

    Done: each finished trajectory's tokens (a response cap reached by a tool's output ends it there), each running
    one's up to its last model turn. Expected: a finished trajectory its own tokens; a running one its done tokens,
    then its inserted tokens (or, while its tool runs, the mean insertion so far) and one more turn of the model's
    mean tokens per turn, and at least the finished ones' mean; one not started yet the mean of what the started
    ones expect. Until a first tool output is in, the share is 0 (no pace): counting the running ones' next turns
    as the model's reply alone said 0.26 for a moment where the share was 0.11.

    Turns alone said too little: a first turn adds about 35 tokens, a later one a tool's output and the model's reply,
    85-111 tokens in the default profile's evaluations, so the first turns were about half the turns and a quarter of
    the time (an evaluation of a trained model: 4:40 left predicted at minute 4 of 18)."""
    started = [*ended, *running]
    if not started:
        return 0.0
    per_turn = sum(p.written for p in started) / sum(p.turns for p in started)  # each has a model turn or more
    insertions = sum(p.turns - 1 + (p.inserted > 0) for p in started)
    if not insertions and any(not p.inserted for p in running):
        return 0.0  # tools run and none has answered: the next turns' size is unknown, so no pace yet
    per_insertion = sum(p.length - p.written for p in started) / insertions if insertions else 0.0
    ended_mean = fmean(p.length for p in ended) if ended else 0.0
    expected = [p.length for p in ended] + [
        max(p.done + (p.inserted or per_insertion) + per_turn, ended_mean) for p in running
    ]
    done = sum(p.length for p in ended) + sum(p.done for p in running)
    whole = sum(expected) + (total - len(started)) * fmean(expected)
    return done / whole if whole else 0.0


def evaluate_examples(
    config: TapoConfig,
    engine: GenerationEngine,
    examples: Sequence[Example],
    tools_mode: str,
    setup: EvalSetup,
    model_label: str,
    data_label: str,
    tools: Any | None = None,
    progress: Progress | None = None,
    loop: EventLoopThread | None = None,
    protocol: Protocol = TAPO,
) -> EvalResult:
    """The core of an evaluation, given an engine and (for modes with tools) a tool registry and the event loop
    its clients live on (the rollout runs there); ``protocol`` is the run's (TAPO's, or with a user's tools)."""
    template = template_for_mode(config.data.template, tools_mode, protocol)
    allowed = mode_tools(protocol)[tools_mode]
    if allowed and tools is None:
        raise ValueError(f"tools mode {tools_mode!r} needs a tool registry")
    runner = RolloutRunner(engine, tools if allowed else None, config.rollout, loop=loop, protocol=protocol)
    stats = getattr(engine, "stats", None)  # the transformers engine's KV-store counters: this evaluation's share
    before = stats.snapshot() if isinstance(stats, KVStats) else None
    with RewardFunction(config.reward, config.rollout.max_response_tokens, protocol) as reward:
        reward.check_sources({ex.data_source for ex in examples})
        cap = config.data.max_prompt_tokens
        trajectories = run_rollouts(runner, examples, template, setup, allowed, progress, cap)
        reward.score_trajectories(trajectories)
    records = to_records(trajectories)
    return EvalResult(
        model=model_label,
        data=data_label,
        tools_mode=tools_mode,
        template=template,
        samples=setup.samples,
        greedy=setup.greedy,
        metrics=compute_metrics(records),
        accuracy_by_searches=accuracy_by_searches(records),
        trajectories=trajectories,
        engine=stats.metrics(before) if isinstance(stats, KVStats) else {},
    )


def _with_tools(
    catalog: ToolCatalog, tools_mode: str, run: Callable[[Any | None, EventLoopThread], EvalResult]
) -> EvalResult:
    """Build the registry for the mode's tools on the event loop the rollout runs on, run, and close both whatever
    happens (the tools on the loop their clients live on, within the close deadline of :mod:`tapo.io.deadline`).
    ``run`` writes its results before it returns, so they are on disk before any tool closes."""
    with EventLoopThread("tapo-eval") as loop:
        enabled = set(mode_tools(catalog.protocol)[tools_mode])
        if not enabled:
            return run(None, loop)
        registry = catalog.build(enabled)
        try:
            return run(registry, loop)
        finally:
            loop.run(registry.aclose())


def evaluate(
    config: TapoConfig,
    model_name: str,
    data_path: str,
    tools_mode: str,
    samples: int,
    greedy: bool,
    limit: int | None,
    out_dir: str | Path,
    engine: GenerationEngine | None = None,
    progress: Progress | None = None,
    catalog: ToolCatalog | None = None,
) -> EvalResult:
    """Evaluate one model on one data set in one tool mode and write the results to ``out_dir``: before the tools
    close, so a tool that fails or hangs in closing cannot cost the evaluation. ``catalog`` is the run's tools
    (None: resolved from ``config.tools``)."""
    from tapo.tools.catalog import resolve_tools

    catalog = catalog or resolve_tools(config.tools)
    setup = EvalSetup(samples, greedy, config.eval.seed)
    examples = load_eval_data(data_path, limit, config.eval.benchmark_dir)
    engine = engine or load_engine(config, model_name)

    def run_and_save(tools: Any | None, loop: EventLoopThread) -> EvalResult:
        result = evaluate_examples(
            config, engine, examples, tools_mode, setup, model_name, data_path, tools, progress, loop, catalog.protocol
        )
        result.save(Path(out_dir))
        return result

    return _with_tools(catalog, tools_mode, run_and_save)


def evaluate_ablation(
    config: TapoConfig,
    model_name: str,
    data_path: str,
    samples: int,
    greedy: bool,
    limit: int | None,
    out_dir: str | Path,
    modes: Sequence[str] | None = None,
    engine: GenerationEngine | None = None,
    progress: Callable[[str], Progress] | None = None,
    catalog: ToolCatalog | None = None,
) -> list[EvalResult]:
    """One model, one data set, each tool mode (None: all of the run's) in ``out_dir/<mode>``, plus ``ablation.md``
    with a row per mode."""
    from tapo.tools.catalog import resolve_tools

    catalog = catalog or resolve_tools(config.tools)
    modes = tuple(mode_tools(catalog.protocol)) if modes is None else modes
    engine = engine or load_engine(config, model_name)
    out = Path(out_dir)
    results = [
        evaluate(
            config,
            model_name,
            data_path,
            mode,
            samples,
            greedy,
            limit,
            out / mode,
            engine=engine,
            progress=progress(mode) if progress else None,
            catalog=catalog,
        )
        for mode in modes
    ]
    save_ablation(results, out)
    return results


def default_out_dir(config: TapoConfig, model_name: str, data_path: str, tools_mode: str) -> Path:
    """``<output_dir>/eval/<model>-<data>-<mode>``, with path-unfriendly characters replaced."""

    def slug(text: str) -> str:
        name = Path(text.rstrip("/")).name or text
        return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:60]

    return Path(config.run.output_dir) / "eval" / f"{slug(model_name)}-{slug(data_path)}-{tools_mode}"
