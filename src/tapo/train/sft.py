"""The supervised warm start: cross-entropy on the model tokens of demonstration trajectories.

SmolLM2-135M does not follow the tag protocol zero-shot, so RL has nothing to reinforce; a short pass
over protocol demonstrations fixes that. Demonstrations are ``Trajectory.to_row()`` rows, so tool
outputs inside them keep mask 0 and are never imitated, exactly as in the RL loss. The optimizer,
schedule, checkpoints and metrics code is the RL trainer's; the settings are ``sft``'s own (the accelerator's
precision and tracker aside: ``trainer.bf16``, ``trainer.tracker``), so RL's batch sizes never size the warm start.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from tapo.config.schema import TapoConfig
from tapo.io.lines import JsonLineError, LineTooLong, jsonl_lines
from tapo.io.runs import RunDir, run_config_text
from tapo.records import upgrade_row
from tapo.train.checkpoint import save_checkpoint
from tapo.train.logprobs import pad_batch, pad_rows, response_logprobs
from tapo.train.micro_batches import cut, padded_positions, sequence_length
from tapo.train.setup import optimizer_step, prepare_for_training

log = logging.getLogger(__name__)


class DemoError(ValueError):
    """A demonstration file that cannot be trained on, named by line."""


@dataclass(frozen=True)
class Demo:
    """One demonstration: its loss counts the tokens the model wrote (the row's ``model_mask``), never tool output."""

    prompt_ids: list[int]
    response_ids: list[int]
    loss_mask: list[int]


def _ids(row: dict[str, Any], key: str, limit: int | None) -> list[int]:
    """``row[key]`` as a list of ints in ``[0, limit)``: a float or string id is a broken file, not a token to round."""
    value = row.get(key)
    if not isinstance(value, list):
        raise ValueError(f"{key} must be a list of integers, got {type(value).__name__}")
    for index, item in enumerate(value):
        if not isinstance(item, int) or isinstance(item, bool):
            raise ValueError(f"{key}[{index}] is {item!r}, not an integer")
        if item < 0 or (limit is not None and item >= limit):
            bound = f"[0, {limit})" if limit is not None else "non-negative"
            raise ValueError(f"{key}[{index}]={item} is outside the tokenizer's vocabulary {bound}")
    return value


def parse_demo(row: Any, vocab_size: int | None = None) -> Demo:
    """One ``Trajectory.to_row()`` row as a :class:`Demo`; ``ValueError`` saying what is wrong with it."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    row = upgrade_row(row)
    demo = Demo(
        _ids(row, "prompt_ids", vocab_size), _ids(row, "response_ids", vocab_size), _ids(row, "model_mask", None)
    )
    if not demo.prompt_ids:
        raise ValueError("prompt_ids is empty")
    if len(demo.response_ids) != len(demo.loss_mask):
        raise ValueError(
            f"response_ids has {len(demo.response_ids)} ids but model_mask has {len(demo.loss_mask)} entries"
        )
    if any(m not in (0, 1) for m in demo.loss_mask):
        raise ValueError("model_mask entries must be 0 or 1")
    return demo


BYTES_PER_TOKEN = 256
"""A demonstration line's bytes per token of its budget: ids, mask, logprob, text and tool output of one token
take well under this, so a line longer than the budget allows is a demonstration over it, skipped unread."""


@dataclass
class DemoLengths:
    """The length budget of a demonstration, training's: the prompt's and the response's (None: no cap)."""

    max_prompt_tokens: int | None = None
    max_response_tokens: int | None = None
    cut: int = 0
    skipped: int = 0
    first_skipped: str = ""

    @property
    def max_line_bytes(self) -> int | None:
        if self.max_prompt_tokens is None or self.max_response_tokens is None:
            return None
        return BYTES_PER_TOKEN * (self.max_prompt_tokens + self.max_response_tokens)

    def fit(self, demo: Demo) -> Demo:
        """``demo`` with its prompt cut to its last ``max_prompt_tokens``, as training cuts a prompt."""
        if self.max_prompt_tokens is None or len(demo.prompt_ids) <= self.max_prompt_tokens:
            return demo
        self.cut += 1
        return Demo(demo.prompt_ids[-self.max_prompt_tokens :], demo.response_ids, demo.loss_mask)

    def too_long(self, demo: Demo) -> bool:
        return self.max_response_tokens is not None and len(demo.response_ids) > self.max_response_tokens

    def skip(self, where: str) -> None:
        self.skipped += 1
        self.first_skipped = self.first_skipped or where

    def summary(self, path: Path) -> str | None:
        """One line saying what was cut and skipped, or None when every demonstration fit."""
        parts = []
        if self.cut:
            parts.append(
                f"{self.cut} prompts over data.max_prompt_tokens={self.max_prompt_tokens} cut to their last "
                f"{self.max_prompt_tokens} tokens"
            )
        if self.skipped:
            parts.append(
                f"{self.skipped} demonstrations over rollout.max_response_tokens={self.max_response_tokens} "
                f"skipped (first: {self.first_skipped})"
            )
        return f"{path}: {'; '.join(parts)}, as training does" if parts else None


def load_demos(
    path: str | Path, limit: int | None = None, vocab_size: int | None = None, lengths: DemoLengths | None = None
) -> list[Demo]:
    """Read ``Trajectory.to_row()`` rows, validating every line (JSON, integer ids below ``vocab_size``,
    consistent lengths) before any training: a bad line fails as ``DemoError`` naming the file and line.

    Within ``lengths`` (training's budget): a longer prompt keeps its last tokens, a longer response (or a line
    too long to hold one, never read: an 8 M-token demonstration took 3 GB) is skipped; both are counted in one
    warning line."""
    path = Path(path)
    lengths = lengths or DemoLengths()
    if not path.is_file():
        raise DemoError(f"demonstration file {str(path)!r} does not exist")
    demos = []
    for line, raw in jsonl_lines(path, lengths.max_line_bytes):
        if isinstance(raw, LineTooLong):
            lengths.skip(f"line {line}, {raw}")
            continue
        try:
            if isinstance(raw, JsonLineError):
                raise raw
            demo = parse_demo(raw, vocab_size)
        except ValueError as error:
            raise DemoError(f"{path}:{line}: {error}") from None
        if lengths.too_long(demo):
            lengths.skip(f"line {line}, {len(demo.response_ids)} response tokens")
        elif sum(demo.loss_mask):
            demos.append(lengths.fit(demo))
    if note := lengths.summary(path):
        log.warning("%s", note)
    if not demos:
        raise DemoError(f"{path}: no demonstration with a mask-1 token within the length budget")
    return demos[:limit] if limit else demos


class SftTrainer:
    def __init__(
        self,
        config: TapoConfig,
        run: RunDir,
        accelerator: Accelerator,
        model: torch.nn.Module,
        tokenizer: Any,
        demos: Sequence[Demo],
    ) -> None:
        self.config = config
        self.scfg = config.sft
        self.run = run
        self.accelerator = accelerator
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.demos = list(demos)
        self.model, self.optimizer, self.scheduler = prepare_for_training(
            accelerator, model, self.scfg.lr, self.scfg.weight_decay, self.scfg.warmup_steps
        )
        self.step = 0

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.demos) // self.scfg.batch_size)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.scfg.epochs

    def _batch_loss(self, batch: Sequence[Demo]) -> dict[str, float]:
        accelerator = self.accelerator
        global_tokens = max(1, sum(sum(d.loss_mask) for d in batch))
        share = batch[accelerator.process_index :: accelerator.num_processes]
        lengths = [sequence_length(d) for d in share] if self.scfg.length_buckets else None
        total = 0.0
        real = padded = 0
        for micro in cut(share, self.scfg.micro_batch_size, lengths):
            micro_real, micro_padded = padded_positions(micro)
            real, padded = real + micro_real, padded + micro_padded
            tokens = pad_batch([d.prompt_ids for d in micro], [d.response_ids for d in micro], self.pad_id)
            tokens = tokens.to(accelerator.device)
            with accelerator.autocast():
                logp, _ = response_logprobs(self.model, tokens, chunk_tokens=self.config.trainer.logprob_chunk_tokens)
            mask = pad_rows([d.loss_mask for d in micro], tokens.response_len).to(logp.device)
            loss = -(logp.float() * mask).sum() / global_tokens
            accelerator.backward(loss * accelerator.num_processes)
            total += float(loss.detach())
        # the loss and the positions (real, padded-to) of every process's micro-batches
        summed, real, padded = accelerator.reduce(
            torch.tensor([total, float(real), float(padded)], device=accelerator.device), "sum"
        ).tolist()
        grad_norm = optimizer_step(accelerator, self.model, self.optimizer, self.scfg.max_grad_norm)
        self.scheduler.step()
        return {
            "sft/loss": summed,
            "sft/grad_norm": grad_norm,
            "sft/tokens": float(global_tokens),
            "sft/pad_frac": 1.0 - real / max(1.0, padded),  # padding's share of the positions run
        }

    def fit(self, on_step: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:
        """``sft.epochs`` passes in a seeded order, then one checkpoint at ``checkpoints/step-N``.

        There is no mid-way checkpoint to resume, so a rerun after an interruption starts over and first drops
        the metric rows the interrupted attempt logged."""
        rows = []
        if self.accelerator.is_main_process:
            self.run.trim(self.step)  # SFT always starts at step 0: rows of an interrupted attempt would repeat
        self.model.train()
        for epoch in range(self.scfg.epochs):
            order = list(range(len(self.demos)))
            random.Random(self.config.run.seed * 31 + epoch).shuffle(order)
            for start in range(0, len(order), self.scfg.batch_size):
                t0 = time.perf_counter()
                row = self._batch_loss([self.demos[i] for i in order[start : start + self.scfg.batch_size]])
                self.step += 1
                elapsed = time.perf_counter() - t0
                row.update(
                    step=float(self.step),
                    epoch=float(epoch),
                    lr=self.scheduler.get_last_lr()[0],
                    **{"time/step_s": elapsed, "perf/tokens_per_s": row["sft/tokens"] / max(elapsed, 1e-9)},
                )
                if self.accelerator.is_main_process:
                    self.run.log_metrics(row)
                self.accelerator.log(row, step=self.step)
                rows.append(row)
                if on_step is not None:
                    on_step(row)
        save_checkpoint(
            self.accelerator,
            self.run.checkpoints,
            self.step,
            self.model,
            self.tokenizer,
            {"phase": "sft", "epochs": self.scfg.epochs, "demos": len(self.demos)},
            1,  # the one checkpoint SFT writes: a run directory holding a finished warm start is refused
            run_config_text(self.config),
        )
        return rows
