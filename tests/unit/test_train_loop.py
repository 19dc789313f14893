"""The DAPO loop on a tiny random model with real sampling from the transformers engine.

The environment is the real one (ToolRolloutSource: RolloutRunner over the transformers engine, no tools); the
task is trivially learnable on purpose: the reward is the share of sampled tokens from the lower
half of the vocabulary, so a working policy-gradient loop must raise it within a few steps.
"""

from __future__ import annotations

import copy
import logging
import random

import pytest
import torch

from tapo.config import load_config
from tapo.engines.hf import HFEngine
from tapo.io.atomic import read_jsonl
from tapo.io.runs import RunDir
from tapo.records import RewardBreakdown, Trajectory, Turn
from tapo.train.batch_metrics import sampled_metrics
from tapo.train.run import build_rl_run
from tapo.train.setup import make_accelerator
from tapo.train.trainer import DapoTrainer, Prepared, loss_mask_for
from tiny_task import SETTINGS, examples, lower_half

pytestmark = pytest.mark.usefixtures("one_thread")


def _trainer(tmp_path, tiny_checkpoint, *overrides: str, stale: bool = False) -> DapoTrainer:
    config = load_config(
        None,
        [
            f"model.name={tiny_checkpoint}",
            f"run.output_dir={tmp_path}",
            "run.name=loop",
            *SETTINGS,
            "trainer.log_trajectories=2",
            "trainer.max_num_gen_batches=2",
            *overrides,
        ],
    )
    run = RunDir.create(config)
    accelerator = make_accelerator(config, run.root)

    def engine(model: torch.nn.Module, tokenizer: object) -> HFEngine:
        return HFEngine(copy.deepcopy(model) if stale else model, tokenizer)

    rl = build_rl_run(config, run, accelerator, examples(), score=lower_half, make_engine=engine)
    if stale:  # a deliberate fault: the engine's copy never receives the new weights
        rl.source.sync = lambda state_dict: None  # type: ignore[method-assign]
    return rl.trainer


@pytest.mark.slow
def test_training_raises_the_reward_of_a_learnable_task(tmp_path, tiny_checkpoint) -> None:
    # A random tiny model's next-token distribution is nearly uniform over 49k ids, and halves of a random
    # embedding table are indistinguishable: sampled at temperature 1 (every id), the task is not learnable in 8
    # steps. At 0.1 the policy samples among a few hundred ids and must learn to prefer the lower half.
    trainer = _trainer(
        tmp_path, tiny_checkpoint, "trainer.max_steps=8", "trainer.save_every=100", "rollout.temperature=0.1"
    )
    rows = trainer.fit()
    rewards = [r["reward/mean"] for r in rows]
    assert len(rows) == 8 and trainer.step == 8
    assert sum(rewards[-2:]) / 2 > sum(rewards[:2]) / 2 + 0.1, rewards
    logged = read_jsonl(trainer.run.metrics_file)
    assert [r["step"] for r in logged] == list(range(1, 9))
    for key in (
        "actor/clip_frac_low",
        "actor/clip_frac_high",
        "actor/clip_frac_dual",
        "actor/entropy",
        "sampling/gen_rounds",
        "sampling/filtered_frac",
        "perf/tokens_per_s",
        "actor/grad_norm",
    ):
        assert key in logged[0]
    assert len(read_jsonl(trainer.run.trajectories_file)) == 16
    assert (trainer.run.checkpoints / "step-8" / "model" / "config.json").is_file()


@pytest.mark.slow
def test_resume_continues_step_cursor_and_optimizer(tmp_path, tiny_checkpoint) -> None:
    first = _trainer(
        tmp_path, tiny_checkpoint, "trainer.max_steps=2", "trainer.save_every=1", "trainer.keep_checkpoints=1"
    )
    first.fit()
    cursor = first.cursor.state_dict()
    moments = [s["exp_avg"].clone() for s in first.optimizer.state_dict()["state"].values()]
    assert [p.name for p in first.run.checkpoints.iterdir()] == ["step-2"]

    second = _trainer(tmp_path, tiny_checkpoint, "trainer.max_steps=3")
    assert second.resume()
    assert second.step == 2 and second.cursor.state_dict() == cursor
    restored = [s["exp_avg"] for s in second.optimizer.state_dict()["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(moments, restored, strict=True))
    for a, b in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)
    second.fit()
    assert second.step == 3
    assert [r["step"] for r in read_jsonl(second.run.metrics_file)] == [1, 2, 3]


def test_unmasked_ablation_counts_tool_tokens_in_the_loss() -> None:
    traj = Trajectory([1], [5, 6, 7, 8], [1, 0, 0, 1])
    assert loss_mask_for(traj, mask_tool_tokens=True) == [1, 0, 0, 1]
    assert loss_mask_for(traj, mask_tool_tokens=False) == [1, 1, 1, 1]


def test_bad_mini_batch_split_is_rejected(tmp_path, tiny_checkpoint) -> None:
    with pytest.raises(ValueError, match="multiple"):
        _trainer(tmp_path, tiny_checkpoint, "trainer.mini_batch_size=6")


def test_single_mini_batch_is_exactly_on_policy(tmp_path, tiny_checkpoint) -> None:
    trainer = _trainer(tmp_path, tiny_checkpoint, "trainer.mini_batch_size=16", "trainer.max_steps=1")
    row = trainer.train_step()
    assert row["actor/ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    assert row["actor/clip_frac_low"] == row["actor/clip_frac_high"] == row["actor/clip_frac_dual"] == 0.0
    assert row["actor/grad_norm"] > 0
    assert row["kv/sampled"] > 0 and row["kv/evicted_positions"] == row["kv/evicted_bytes"] == 0  # the step's counts
    assert 0 <= row["actor/pad_frac"] < 1 and row["perf/update_tokens_per_s"] > 0


def test_length_buckets_and_packing_leave_the_gradient_of_a_mini_batch_unchanged(tmp_path, tiny_checkpoint) -> None:
    """Micro-batches cut by length hold less padding, packed ones less still, and the mini-batch's accumulated
    gradient is the same (1e-6 for buckets, the same sums in another order; 1e-5 packed, other attention shapes)."""
    trainer = _trainer(tmp_path, tiny_checkpoint, "trainer.mini_batch_size=16", "trainer.micro_batch_size=4")
    rng = random.Random(0)
    items = []
    for _ in range(16):  # lengths of prompts (1-12) and responses (1-24) that differ, as real rollouts' do
        response = [rng.randrange(5, 500) for _ in range(rng.randint(1, 24))]
        mask = [int(rng.random() < 0.8) for _ in response]  # some inserted (tool) tokens
        traj = Trajectory([rng.randrange(5, 500) for _ in range(rng.randint(1, 12))], response, mask)
        items.append(Prepared(traj, rng.choice([-1.0, 0.5, 1.0]), loss_mask_for(traj, True)))
    global_tokens = sum(item.tokens for item in items)
    grads, positions, sums = {}, {}, {}
    for mode, buckets, packed in (("plain", False, False), ("buckets", True, False), ("packed", False, True)):
        trainer.tcfg = trainer.tcfg.model_copy(update={"length_buckets": buckets, "pack_sequences": packed})
        trainer.optimizer.zero_grad(set_to_none=True)
        sums[mode], _, positions[mode] = trainer.accumulate(items, global_tokens)
        grads[mode] = [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]
    assert grads["plain"] and len(grads["buckets"]) == len(grads["packed"]) == len(grads["plain"])
    for mode, tolerance in (("buckets", 1e-6), ("packed", 1e-5)):
        for other, plain in zip(grads[mode], grads["plain"], strict=True):
            assert torch.allclose(other, plain, atol=tolerance, rtol=tolerance), (mode, (other - plain).abs().max())
    assert sums["packed"]["loss"] == pytest.approx(sums["plain"]["loss"], abs=1e-5)
    assert sums["packed"]["entropy"] == pytest.approx(sums["plain"]["entropy"], rel=1e-5)
    real = {mode: r for mode, (r, _) in positions.items()}
    run = {mode: p for mode, (_, p) in positions.items()}
    assert len(set(real.values())) == 1  # the same tokens each time
    assert run["packed"] < run["buckets"] < run["plain"]  # less padding each time


def test_a_step_reports_its_rollout_trajectory_by_trajectory_then_its_update(tmp_path, tiny_checkpoint) -> None:
    """What the live display draws: ``rollout d/16`` as each trajectory finishes, then ``update d/2``."""
    trainer = _trainer(tmp_path, tiny_checkpoint, "trainer.max_steps=1", "trainer.max_num_gen_batches=1")
    phases: list[tuple[str, int, int]] = []
    trainer.on_phase = lambda phase, done, total: phases.append((phase, done, total))
    trainer.train_step()
    total = 4 * 4  # prompts_per_step x group_size
    assert phases == [("rollout", done, total) for done in range(total + 1)] + [("update", d, 2) for d in range(3)]


MISMATCH = ("logprob_diff_mean", "mismatch_kl", "is_ratio_mean", "is_ratio_max", "is_ratio_min")


def test_the_sampler_is_measured_against_the_learner_every_step(tmp_path, tiny_checkpoint, caplog) -> None:
    """In sync (the engine samples with the trainer's own fp32 model) the gap is rounding noise; an engine left
    with the starting weights shows a large KL at the next step, and the warning names it."""
    overrides = ("trainer.lr=3e-2", "trainer.max_steps=2", "trainer.save_every=100")
    synced = _trainer(tmp_path / "synced", tiny_checkpoint, *overrides)
    rows = [synced.train_step() for _ in range(2)]
    for row in rows:
        assert all(f"rollout/{key}" in row for key in MISMATCH)
        assert row["rollout/logprob_diff_mean"] < 1e-3 and 0 <= row["rollout/mismatch_kl"] < 1e-5
        assert row["rollout/sampler_tokens"] > 0
    assert synced.correction == "none"  # auto: the trainer's own model samples
    correction = ("trainer.rollout_correction=seq_mis", "trainer.rollout_is_cap=1.05")
    stale = _trainer(tmp_path / "stale", tiny_checkpoint, *overrides, *correction, stale=True)
    with caplog.at_level(logging.WARNING, logger="tapo.train.mismatch"):
        first, second = stale.train_step(), stale.train_step()
    assert first["rollout/logprob_diff_mean"] < 1e-3  # nothing has been updated yet
    assert second["rollout/mismatch_kl"] > 100 * max(rows[1]["rollout/mismatch_kl"], 1e-6)
    assert second["rollout/mismatch_kl"] > 0.01 and second["rollout/logprob_diff_mean"] > 0.05
    assert second["rollout/is_ratio_min"] < 1 / 1.05 and second["rollout/masked_seq_frac"] > 0  # MIS dropped some
    assert any("step 2: sampler/learner mismatch KL" in r.getMessage() for r in caplog.records)


def test_an_empty_state_dict_is_an_error_not_a_skip(tmp_path, tiny_checkpoint) -> None:
    trainer = _trainer(tmp_path, tiny_checkpoint)
    with pytest.raises(ValueError, match="empty state dict"):
        trainer.source.sync({})


def test_a_step_logs_every_sampled_group_with_intervals_over_prompts(tmp_path, tiny_checkpoint) -> None:
    """The over-RL-steps plot reads ``sampled/*``: all groups of all rounds, before the filter keeps mixed ones."""
    trainer = _trainer(tmp_path, tiny_checkpoint, "trainer.max_steps=1", "trainer.save_every=100")
    (row,) = trainer.fit()
    rounds = row["sampling/gen_rounds"]
    assert row["sampled/prompts"] == 4 * rounds and row["sampled/trajectories"] == 16 * rounds
    assert row["batch/trajectories"] == 16
    for key in ("sampled/acc", "sampled/calls_per_question"):
        assert row[f"{key}_ci_lo"] <= row[key] <= row[f"{key}_ci_hi"]


def test_sampled_metrics_average_a_prompts_answers_first() -> None:
    def answer(acc: bool, calls: int) -> Trajectory:
        traj = Trajectory([1], turns=[Turn("search", "q") for _ in range(calls)])
        traj.reward = RewardBreakdown(format_ok=True, score=float(acc), penalty=0.0, total=float(acc), acc=acc)
        return traj

    groups = [[answer(True, 1), answer(True, 1), answer(False, 0), answer(False, 0)], [answer(False, 2)] * 4]
    row = sampled_metrics(groups)
    assert row["sampled/acc"] == 0.25 and row["sampled/calls_per_question"] == 1.25
    assert (row["sampled/prompts"], row["sampled/trajectories"]) == (2, 8)
    assert row["sampled/acc_ci_lo"] == 0.0 and row["sampled/acc_ci_hi"] == 0.5  # bootstrap over the 2 prompts
    assert sampled_metrics([]) == {}
