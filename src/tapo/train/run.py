"""The one place that assembles a training run: the RL run (policy, rollout source, DAPO trainer) and the SFT
warm start (policy, demonstrations trainer).

``tapo train``, ``tapo sft``, the dry run's one step, the benchmarks and the tests all build through here, so a
choice such as "a sharded trainer needs the engine to keep its own copy of the weights" is made once and holds for
every caller (copies of this assembly had drifted apart before). As in torchtune's recipes, a run is built
(``build_rl_run``), trained (:meth:`RlRun.train`) and closed (:meth:`RlRun.close`, or a ``with`` block); the
caller owns only what is its own: the accelerator, the run directory and its lock, and what it prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import DistributedType

from tapo.config.schema import TapoConfig
from tapo.data.schema import Example
from tapo.engines.base import GenerationEngine
from tapo.io.closing import Closing
from tapo.io.runs import RunDir
from tapo.train.guidance import ExpertGuide
from tapo.train.producer import AsyncRolloutSource
from tapo.train.setup import load_policy
from tapo.train.sft import Demo, SftTrainer
from tapo.train.source import ScoreFn, ToolRolloutSource
from tapo.train.trainer import DapoTrainer, PhaseFn

# (policy model, tokenizer) -> the engine that samples from it, for a caller that supplies its own engine
EngineFactory = Callable[[Any, Any], GenerationEngine]
StepFn = Callable[[dict[str, float]], None]


def _sharded(accelerator: Accelerator) -> bool:
    """FSDP and ZeRO-3 keep one shard per process: an engine sharing the trainer's module would sample from a
    shard and run collectives in ``forward``, so it needs its own full copy."""
    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


class RlRun(Closing):
    """A built RL run: its trainer and the rollout source the trainer samples from. Close it (or use it as a
    ``with`` block) so the tools, the event loop and the engine's processes end with it."""

    def __init__(self, trainer: DapoTrainer, source: ToolRolloutSource | AsyncRolloutSource) -> None:
        self.trainer = trainer
        self.source = source

    def resume(self, checkpoint: Path | None = None) -> bool:
        """Continue from ``checkpoint`` (default: the newest intact one); False when the run has none yet."""
        return self.trainer.resume(checkpoint)

    def start_trackers(self) -> None:
        """The trackers ``trainer.tracker`` names, on the main process, with the config as flat hyper-parameters."""
        config = self.trainer.config
        if self.trainer.accelerator.is_main_process and config.trainer.tracker != "none":
            self.trainer.accelerator.init_trackers(config.run.name, config=flat_config(config))

    def train(self, on_step: StepFn | None = None, on_phase: PhaseFn | None = None) -> list[dict[str, float]]:
        """Train to ``total_steps`` with checkpoints; ``on_step(row)`` after each step, ``on_phase`` within one."""
        if on_phase is not None:
            self.trainer.on_phase = on_phase
        rows = self.trainer.fit(on_step=on_step)
        self.trainer.accelerator.end_training()
        return rows

    def close(self) -> None:
        self.source.close()


def build_rl_run(
    config: TapoConfig,
    run: RunDir,
    accelerator: Accelerator,
    examples: Sequence[Example],
    *,
    score: ScoreFn | None = None,
    make_engine: EngineFactory | None = None,
) -> RlRun:
    """Load the policy, build the rollout source (the configured engine and tools, or ``make_engine``'s engine)
    and the DAPO trainer. ``score`` replaces the config's reward (benchmarks and tests with a synthetic task).
    With ``trainer.max_staleness`` > 0 the trainer samples through the asynchronous producer, whose engine keeps its
    own copy of the weights (the learner updates its model in place while the producer generates)."""
    model, tokenizer = load_policy(config.model)
    engine = make_engine(model, tokenizer) if make_engine is not None else None
    source = ToolRolloutSource(
        config,
        model,
        tokenizer,
        score=score,
        process_index=accelerator.process_index,
        engine=engine,
        own_engine_copy=_sharded(accelerator) or config.trainer.max_staleness > 0,
    )
    try:
        guide = ExpertGuide(source, config.trainer.guidance) if config.trainer.guidance.enabled else None
        trainer = DapoTrainer(config, run, accelerator, model, tokenizer, source, examples, guide)
        if not config.trainer.max_staleness:
            return RlRun(trainer, source)
        producer = AsyncRolloutSource(source, examples, trainer.cursor, config, accelerator.num_processes, model)
    except BaseException:
        source.close()
        raise
    trainer.source = producer
    return RlRun(trainer, producer)


def build_sft_run(config: TapoConfig, run: RunDir, accelerator: Accelerator, demos: Sequence[Demo]) -> SftTrainer:
    """Load the policy and the warm-start trainer over ``demos`` (tokenized demonstrations)."""
    model, tokenizer = load_policy(config.model)
    return SftTrainer(config, run, accelerator, model, tokenizer, list(demos))


def flat_config(config: TapoConfig) -> dict[str, object]:
    """Trackers take flat scalar hyper-parameters: ``{"trainer.lr": 1e-6, ...}``."""
    out: dict[str, object] = {}

    def walk(prefix: str, node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else key, value)
        elif isinstance(node, int | float | str | bool):
            out[prefix] = node

    walk("", config.model_dump(mode="json"))
    return out
