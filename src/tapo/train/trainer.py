"""The DAPO loop: sample groups, score, drop constant groups, refill, recompute old log-probs, update, sync.

The environment (engine + tools + rollout + reward) is behind :class:`RolloutSource`, so the loop does not
care whether trajectories come from the transformers engine sharing this model on CPU or from vLLM.
Distribution follows accelerate: every process draws the same prompts, rolls out its share, and the
groups are gathered so every process sees the same batch (the filter needs all of them); each process
then trains on its share of every mini-batch, with the token-mean taken over the whole mini-batch.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from tapo.algo.advantages import broadcast_to_tokens, group_advantages
from tapo.algo.correction import NO_MISMATCH, MismatchSums, correction_weights, mismatch_metrics, mismatch_sums
from tapo.algo.filtering import SamplingState, add_round, batch_full, constant_groups, finish
from tapo.algo.guidance import mixed_policy_loss
from tapo.algo.loss import ClipConfig
from tapo.config.schema import TapoConfig
from tapo.data.kinds import kind_of
from tapo.data.schema import Example
from tapo.io.runs import RunDir, run_config_text
from tapo.records import Trajectory
from tapo.train.batch_metrics import rollout_metrics, sampled_metrics
from tapo.train.checkpoint import choose_checkpoint, load_checkpoint, save_checkpoint, set_aside_after
from tapo.train.cursor import PromptCursor
from tapo.train.full_weights import full_state_dict
from tapo.train.guidance import ExpertGuide, GuidanceTally
from tapo.train.informative import informative_metrics
from tapo.train.logprobs import pack_batch, pad_batch, pad_rows, response_logprobs
from tapo.train.micro_batches import cut, padded_positions, sequence_length
from tapo.train.mismatch import drop_rejected, reduce_sums, resolve_correction, sampler_tensors, warn_if_mismatched
from tapo.train.packing import packed_positions
from tapo.train.plan import total_steps
from tapo.train.prompt_history import PromptDrawer
from tapo.train.setup import optimizer_step, prepare_for_training
from tapo.train.source import Group, RolloutSource

log = logging.getLogger(__name__)

# on_phase(phase, done, total): the running step is in ``phase`` ("rollout", "update") with done of total units
PhaseFn = Callable[[str, int, int], None]


def _no_phase(phase: str, done: int, total: int) -> None:
    """The default ``on_phase``: nobody is watching."""


@dataclass
class Prepared:
    """One trajectory on its way into the update: its advantage, the tokens its loss counts (``loss_mask``, which
    includes tool output under the no-mask ablation) and the log-probs of the policy the step starts from
    (``old_logprobs``; ``ref_logprobs`` of the reference model when ``trainer.kl_coef > 0``)."""

    traj: Trajectory
    advantage: float
    loss_mask: list[int]
    old_logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None
    tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = sum(self.loss_mask)


def loss_mask_for(traj: Trajectory, mask_tool_tokens: bool) -> list[int]:
    """Mask-1 tokens of the loss. ``mask_tool_tokens=False`` is the original's defect, reproduced as an
    ablation: the loss uses the attention mask (every response token, tool output included) while the
    advantage stays on model tokens only, so tool tokens inflate the token-mean denominator."""
    return list(traj.model_mask) if mask_tool_tokens else [1] * len(traj.response_ids)


class DapoTrainer:
    def __init__(
        self,
        config: TapoConfig,
        run: RunDir,
        accelerator: Accelerator,
        model: torch.nn.Module,
        tokenizer: Any,
        source: RolloutSource,
        examples: Sequence[Example],
        guide: ExpertGuide | None = None,
    ) -> None:
        tcfg = config.trainer
        if tcfg.mini_batch_size % accelerator.num_processes:
            raise ValueError(
                f"trainer.mini_batch_size={tcfg.mini_batch_size} must divide evenly over "
                f"{accelerator.num_processes} processes"
            )
        self.config = config
        self.tcfg = tcfg
        self.run = run
        self.accelerator = accelerator
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.source = source
        self.examples = list(examples)
        self.reference = (
            copy.deepcopy(model).eval().requires_grad_(False).to(accelerator.device) if tcfg.kl_coef > 0 else None
        )
        self.model, self.optimizer, self.scheduler = prepare_for_training(
            accelerator, model, tcfg.lr, tcfg.weight_decay, tcfg.warmup_steps
        )
        # -- prompt selection (issue #32): kinds in proportion per step, GRESO skipping; both off by default --
        strata = [kind_of(e) for e in self.examples] if tcfg.stratify_kinds else None
        self.cursor = PromptCursor(len(self.examples), config.run.seed, config.data.shuffle, strata=strata)
        self.prompts = PromptDrawer(self.cursor, self.examples, tcfg.skip_constant, config.run.seed)
        # -- end prompt selection --
        self.step = 0
        self.clip = ClipConfig(tcfg.clip_low, tcfg.clip_high, tcfg.dual_clip)
        self.correction = resolve_correction(config)
        self.on_phase: PhaseFn = _no_phase
        self.guide = guide  # trainer.guidance: expert members in groups with no success (None: off, as TAPO)

    # ---- schedule -------------------------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return total_steps(self.tcfg, len(self.examples))

    def trainer_state(self) -> dict[str, Any]:
        return {"cursor": self.cursor.state_dict(), **self.prompts.state_dict()}

    def resume(self, checkpoint: Path | None = None) -> bool:
        """Continue from ``checkpoint`` (default: the newest intact one of the run, see ``choose_checkpoint``);
        False when there is none. Either way the rows logged after the step resumed from (0: none) are dropped,
        as those steps are about to be redone, and newer checkpoints are set aside."""
        checkpoint = choose_checkpoint(self.run.checkpoints, checkpoint)
        state = load_checkpoint(self.accelerator, checkpoint) if checkpoint is not None else {"step": 0}
        self.step = int(state["step"])
        self.accelerator.wait_for_everyone()  # every process has read the checkpoint before any is renamed
        if self.accelerator.is_main_process:
            self.run.trim(self.step)
            set_aside_after(self.run.checkpoints, self.step)
        if checkpoint is None:
            return False
        self.cursor.load_state_dict(state["cursor"])
        self.prompts.load_state_dict(state)
        self._sync_engine()
        log.info("resumed %s at step %d (epoch %d, position %d)", checkpoint, self.step, *state["cursor"].values())
        return True

    def _sync_engine(self) -> None:
        """Push the full weights to every process's engine, and let no process sample again before every push is
        done (a shared server)."""
        self.source.sync(full_state_dict(self.accelerator, self.model))
        self.accelerator.wait_for_everyone()

    # ---- sampling -------------------------------------------------------------------------------------------
    def collect(self) -> tuple[list[Group], dict[str, float]]:
        """Dynamic sampling: rounds of fresh prompts until ``prompts_per_step`` informative groups are found."""
        accelerator = self.accelerator
        target = self.tcfg.prompts_per_step
        state: SamplingState[Group] = SamplingState()
        sampled: list[Group] = []  # every group of every round, before filtering: what the policy does
        sampled_constant: list[bool] = []  # whether each of them is constant, whether or not the filter is on
        guided = GuidanceTally()
        while True:
            indices = self.prompts.take(target, self.step, state.rounds)  # the cursor's, less skipped prompts
            local = [self.examples[i] for i in indices[accelerator.process_index :: accelerator.num_processes]]
            groups = self._sample(local, state.rounds)
            groups = gather_object(groups) if accelerator.num_processes > 1 else groups
            sampled += groups
            # acc (+ the tool-cost bonus when it is on): (groups, group_size)
            signals = torch.tensor([[t.scored.signal for t in g] for g in groups])
            constant = constant_groups(signals, self.tcfg.constant_group_tol).tolist()
            flags = constant if self.tcfg.filter_groups else [False] * len(groups)
            self.prompts.record(groups, constant, self.step)  # skipping's history (nothing when off)
            sampled_constant += constant
            if self.guide is not None:  # guidance (trainer.guidance): an expert member in groups with no success
                groups, flags = self.guide.inject(groups, flags, guided)  # after the policy's outcomes are recorded
            state = add_round(state, groups, flags, target)
            if batch_full(state, target) or state.rounds >= self.tcfg.max_num_gen_batches:
                break
        batch, filled = finish(state, target)
        if filled:
            log.warning(
                "step %d: only %d informative groups after %d rounds; filled %d with unfiltered groups",
                self.step + 1,
                len(batch) - filled,
                state.rounds,
                filled,
            )
        stats = {
            "sampling/gen_rounds": float(state.rounds),
            "sampling/filtered_frac": state.filtered / max(1, state.seen),
            "sampling/filled_groups": float(filled),
            **sampled_metrics(sampled),
            **informative_metrics(sampled, sampled_constant),
            **self.prompts.end_step(),
            **(guided.metrics() if self.guide is not None else {}),
        }
        return batch, stats

    def _sample(self, local: Sequence[Example], round: int) -> list[Group]:
        """This process's groups of one round, reporting each finished trajectory to ``on_phase``."""
        if not local:
            return []
        phase = "rollout" if round == 0 else f"rollout (round {round + 1})"
        total = len(local) * self.tcfg.group_size
        done = 0
        self.on_phase(phase, done, total)

        def finished() -> None:
            nonlocal done
            done += 1
            self.on_phase(phase, done, total)

        return self.source.sample(local, self.step, round, on_done=finished)

    # ---- update ---------------------------------------------------------------------------------------------
    def prepare(self, groups: Sequence[Group]) -> list[Prepared]:
        rewards = torch.tensor([[t.scored.total for t in g] for g in groups])  # (groups, group_size)
        advantages = group_advantages(rewards)
        return [
            Prepared(traj, float(advantages[gi, ti]), loss_mask_for(traj, self.tcfg.mask_tool_tokens))
            for gi, group in enumerate(groups)
            for ti, traj in enumerate(group)
        ]

    def _forward(self, items: Sequence[Prepared], with_entropy: bool, model: Any = None) -> Any:
        """Log-probs (and entropies) ``[B, T]`` of the responses, padded or packed (``trainer.pack_sequences``)."""
        prompts, responses = [p.traj.prompt_ids for p in items], [p.traj.response_ids for p in items]
        packed = self.tcfg.pack_sequences
        batch = (pack_batch if packed else pad_batch)(prompts, responses, self.pad_id).to(self.accelerator.device)
        with self.accelerator.autocast():
            logp, entropy = response_logprobs(
                model or self.model,
                batch,
                self.config.rollout.temperature,
                with_entropy=with_entropy,
                chunk_tokens=self.tcfg.logprob_chunk_tokens,
            )
        return batch, logp, entropy

    def _positions(self, micro: Sequence[Prepared]) -> tuple[int, int]:
        """(real, run) positions of one micro-batch's forward pass, padded or packed."""
        if self.tcfg.pack_sequences:
            return packed_positions([sequence_length(item.traj) for item in micro])
        return padded_positions([item.traj for item in micro])

    def _micro_batches(self, items: Sequence[Prepared]) -> list[list[Prepared]]:
        """``items`` in micro-batches of ``trainer.micro_batch_size``, cut by length unless
        ``trainer.length_buckets`` is off (:mod:`tapo.train.micro_batches`)."""
        lengths = [sequence_length(item.traj) for item in items] if self.tcfg.length_buckets else None
        return cut(items, self.tcfg.micro_batch_size, lengths)

    @torch.no_grad()
    def _record_old_logprobs(self, items: Sequence[Prepared]) -> None:
        """Old (and reference) log-probs from the training model before any update of this step."""
        self.model.eval()
        for micro in self._micro_batches(items):
            _, logp, _ = self._forward(micro, with_entropy=False)
            ref = self._forward(micro, False, self.reference)[1] if self.reference is not None else None
            for i, item in enumerate(micro):
                n = len(item.traj.response_ids)
                item.old_logprobs = logp[i, :n].float().cpu()
                item.ref_logprobs = ref[i, :n].float().cpu() if ref is not None else None
        self.model.train()

    def update(self, groups: Sequence[Group]) -> dict[str, float]:
        """One pass over the batch in mini-batches (counted in trajectories across all processes)."""
        accelerator = self.accelerator
        items = self.prepare(groups)
        random.Random(self.config.run.seed * 7919 + self.step).shuffle(items)
        minis = cut(items, self.tcfg.mini_batch_size)
        local = [mini[accelerator.process_index :: accelerator.num_processes] for mini in minis]
        self.on_phase("update", 0, len(minis))
        if len(minis) > 1 or self.reference is not None or self.correction == "seq_mis":
            self._record_old_logprobs([item for share in local for item in share])
        # else: one mini-batch is exactly on-policy, old log-probs are the current ones (one forward saved)
        if self.correction == "seq_mis":  # rejected trajectories leave the loss and its denominator, as in verl
            drop_rejected(accelerator, items, self.tcfg.rollout_is_cap)
        sums: dict[str, float] = {}
        mismatch = NO_MISMATCH
        grad_norms = []
        positions = [0, 0]  # real and padded-to positions of this process's update micro-batches
        started = time.perf_counter()
        for mini, share in zip(minis, local, strict=True):
            global_tokens = max(1, sum(item.tokens for item in mini))
            mini_sums, mini_mismatch, mini_positions = self.accumulate(share, global_tokens)
            for key, value in mini_sums.items():
                sums[key] = sums.get(key, 0.0) + value
            mismatch = mismatch + mini_mismatch
            positions = [a + b for a, b in zip(positions, mini_positions, strict=True)]
            grad_norms.append(optimizer_step(accelerator, self.model, self.optimizer, self.tcfg.max_grad_norm))
            self.on_phase("update", len(grad_norms), len(minis))
        seconds = time.perf_counter() - started
        self.scheduler.step()
        keys = sorted(sums)
        totals = accelerator.reduce(
            torch.tensor([sums[k] for k in keys] + [float(p) for p in positions], device=accelerator.device), "sum"
        ).tolist()
        stats = {f"actor/{k}": v / len(minis) for k, v in zip(keys, totals[: len(keys)], strict=True)}
        real, padded = totals[len(keys) :]
        stats["actor/pad_frac"] = 1.0 - real / max(1.0, padded)  # padding's share of the positions run
        stats["perf/update_tokens_per_s"] = real / max(1e-9, seconds)  # real positions forward + backward per s
        stats["actor/grad_norm"] = sum(grad_norms) / len(grad_norms)
        stats["actor/lr"] = self.scheduler.get_last_lr()[0]
        stats["actor/loss_tokens"] = float(sum(item.tokens for item in items))
        stats.update(mismatch_metrics(reduce_sums(accelerator, mismatch)))
        warn_if_mismatched(self.step + 1, stats, self.config.rollout.mismatch_warn, self.correction)
        return stats

    def accumulate(
        self, share: Sequence[Prepared], global_tokens: int
    ) -> tuple[dict[str, float], MismatchSums, tuple[int, int]]:
        """Forward and backward of this process's ``share`` of one mini-batch in micro-batches, gradients summed
        into ``.grad`` (synchronised over processes on the last one): the summed loss stats, the mismatch sums and
        the (real, padded-to) positions."""
        sums: dict[str, float] = {}
        mismatch = NO_MISMATCH
        real = padded = 0
        micros = self._micro_batches(share)
        for index, micro in enumerate(micros):
            last = index == len(micros) - 1
            with contextlib.nullcontext() if last else self.accelerator.no_sync(self.model):
                micro_stats, micro_mismatch = self._micro_step(micro, global_tokens)
            for key, value in micro_stats.items():
                sums[key] = sums.get(key, 0.0) + value
            mismatch = mismatch + micro_mismatch
            micro_real, micro_padded = self._positions(micro)
            real, padded = real + micro_real, padded + micro_padded
        return sums, mismatch, (real, padded)

    def _micro_step(self, micro: Sequence[Prepared], global_tokens: int) -> tuple[dict[str, float], MismatchSums]:
        """Forward, loss and backward of one micro-batch; the loss stats and the sampler/learner mismatch sums.

        The mismatch compares the engine's log-probs with the trainer's at the start of the step (``old``),
        the policy the update starts from: what the sampler should have been.
        """
        batch, logp, entropy = self._forward(micro, with_entropy=True)  # logp, entropy: [B, T]
        width = batch.response_len  # T: the longest response of this micro-batch
        device = logp.device
        mask = pad_rows([item.loss_mask for item in micro], width).to(device)  # [B, T] tokens in the loss
        model_mask = pad_rows([item.traj.model_mask for item in micro], width).to(device)  # [B, T] sampled tokens
        advantages = torch.tensor([item.advantage for item in micro], device=device)  # [B]
        adv = broadcast_to_tokens(advantages, model_mask)  # [B, T]
        old = (  # [B, T]
            logp.detach().float()
            if micro[0].old_logprobs is None
            else pad_rows([item.old_logprobs.tolist() for item in micro], width).to(device)
        )
        ref = (  # [B, T]
            pad_rows([item.ref_logprobs.tolist() for item in micro], width).to(device)
            if self.reference is not None
            else None
        )
        sampler, sampled = (t.to(device) for t in sampler_tensors([item.traj for item in micro], width))  # [B, T]
        applied = correction_weights(old, sampler, sampled, self.correction, self.tcfg.rollout_is_cap)
        expert = torch.tensor([item.traj.origin == "expert" for item in micro], device=device)  # [B] guidance
        loss_args = (global_tokens, self.tcfg.guidance.shaping_gamma, self.clip, ref, self.tcfg.kl_coef)
        out = mixed_policy_loss(logp.float(), old, adv, mask, expert, *loss_args, applied.weights)  # DAPO's w/o experts
        # Gradients are averaged over processes by DDP; the token-mean is already global, so undo the average.
        self.accelerator.backward(out.loss * self.accelerator.num_processes)
        stats = dict(out.stats)
        stats["loss"] = float(out.loss.detach())
        stats["entropy"] = float((entropy * mask).sum() / global_tokens) if entropy is not None else 0.0
        return stats, mismatch_sums(old, sampler, sampled, applied)

    # ---- the loop -------------------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        t0 = time.perf_counter()
        groups, sampling = self.collect()
        t1 = time.perf_counter()
        update = self.update(groups)
        t2 = time.perf_counter()
        self._sync_engine()
        t3 = time.perf_counter()
        self.step += 1
        trajs = [t for g in groups for t in g]
        row: dict[str, float] = {"step": float(self.step), "epoch": float(self.cursor.epoch)}
        row.update(rollout_metrics(trajs))
        row.update(sampling)
        row.update(self.source.engine_metrics())
        row.update(update)
        model_tokens = sum(t.n_model_tokens for t in trajs)
        row["time/rollout_s"] = t1 - t0
        row["time/tools_s"] = row.pop("tools/latency_s", 0.0)
        row["time/update_s"] = t2 - t1
        row["time/sync_s"] = t3 - t2  # the new weights into the engine (a copy, or vLLM's in-place reload)
        row["time/step_s"] = time.perf_counter() - t0
        row["perf/tokens_per_s"] = model_tokens / max(1e-9, row["time/step_s"])
        if self.accelerator.is_main_process:
            self.run.log_metrics(row)
            k = self.tcfg.log_trajectories
            if k:
                picks = random.Random(self.step).sample(trajs, min(k, len(trajs)))
                self.run.log_trajectories([t.to_row(self.step) for t in picks])
        self.accelerator.log(row, step=self.step)
        return row

    def save(self) -> Path:
        return save_checkpoint(
            self.accelerator,
            self.run.checkpoints,
            self.step,
            self.model,
            self.tokenizer,
            self.trainer_state(),
            self.tcfg.keep_checkpoints,
            run_config_text(self.config),
        )

    def fit(self, on_step: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:
        """Train until ``total_steps``, checkpointing every ``save_every`` steps and at the end."""
        rows = []
        while self.step < self.total_steps:
            row = self.train_step()
            rows.append(row)
            if on_step is not None:
                on_step(row)
            if self.step % self.tcfg.save_every == 0 or self.step == self.total_steps:
                self.save()
        return rows
