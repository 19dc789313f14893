"""Asynchronous RL (trainer.max_staleness): the synchronous loop is untouched at 0, the staleness bound holds, every
token carries the version that sampled it (also across a weight load in the middle of a turn), and a resumed run
takes exactly the prompts the uninterrupted run takes.

The trainer runs the tiny random model on the learnable tiny task; the producer samples with the transformers
engine on its own copy of the weights, or with the scripted engine (multi-turn, weights pushed between its calls).
"""

from __future__ import annotations

import asyncio
import copy

import pytest
import torch

from tapo.algo.correction import correction_weights
from tapo.config import load_config
from tapo.engines.base import SamplingParams
from tapo.engines.hf import HFEngine
from tapo.engines.scripted import ScriptedEngine
from tapo.engines.versioned import VersionedEngine
from tapo.io.atomic import read_jsonl
from tapo.io.runs import RunDir
from tapo.records import Trajectory, upgrade_row
from tapo.train.mismatch import resolve_correction
from tapo.train.run import RlRun, build_rl_run
from tapo.train.setup import make_accelerator
from tiny_task import SETTINGS, examples, lower_half

pytestmark = pytest.mark.usefixtures("one_thread")

# what a timer measures, not what the seeded run computes
TIMED = ("time/", "perf/")


def _run(tmp_path, tiny_checkpoint, name: str, *overrides: str, scripted: bool = False) -> RlRun:
    config = load_config(
        None,
        [
            f"model.name={tiny_checkpoint}",
            f"run.output_dir={tmp_path}",
            f"run.name={name}",
            *SETTINGS,
            "trainer.max_num_gen_batches=2",
            "trainer.save_every=100",
            *overrides,
        ],
    )
    run = RunDir.create(config)
    accelerator = make_accelerator(config, run.root)

    def engine(model: torch.nn.Module, tokenizer: object) -> HFEngine | ScriptedEngine:
        if scripted:  # model turns that are not actions (each answered by the corrective message), then an answer
            return ScriptedEngine(tokenizer, ["thinking", "still thinking", "<answer>x</answer>"])
        return HFEngine(model, tokenizer, own_copy=True)

    return build_rl_run(config, run, accelerator, examples(), score=lower_half, make_engine=engine)


def _untimed(row: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in row.items() if not k.startswith(TIMED)}


@pytest.mark.slow
def test_max_staleness_zero_is_the_synchronous_loop_bit_for_bit(tmp_path, tiny_checkpoint) -> None:
    runs = []
    for name, extra in (("absent", ()), ("zero", ("trainer.max_staleness=0",))):
        with _run(tmp_path, tiny_checkpoint, name, "trainer.max_steps=2", *extra) as rl:
            runs.append([_untimed(row) for row in rl.train()])
    assert runs[0] == runs[1]
    assert not any(key.startswith("async/") for key in runs[0][0])


@pytest.mark.slow
def test_the_bound_holds_and_every_token_carries_its_version(tmp_path, tiny_checkpoint) -> None:
    with _run(
        tmp_path,
        tiny_checkpoint,
        "bound",
        "trainer.max_staleness=1",
        "trainer.max_steps=4",
        "trainer.log_trajectories=16",
    ) as rl:
        rows = rl.train()
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        taken = row["async/staleness_0"] + row["async/staleness_1"]
        assert taken == row["sampling/gen_rounds"] * 16  # every trajectory taken is within one version
        assert row["async/dropped_trajectories"] == 0  # the producer paused instead
        assert row["async/staleness_mean"] == pytest.approx(row["async/staleness_1"] / taken)
    assert sum(r["async/staleness_1"] for r in rows) > 0  # sampling did overlap an update
    for row in read_jsonl(rl.trainer.run.trajectories_file):
        traj = Trajectory.from_row(row)
        current = row["step"] - 1  # the version the step that took it started from
        assert 0 <= current - traj.policy_version <= 1
        assert len(traj.token_versions) == len(traj.response_ids)
        model_versions = [v for v, m in zip(traj.token_versions, traj.model_mask, strict=True) if m]
        assert all(traj.policy_version <= v <= current for v in model_versions)


@pytest.mark.slow
def test_asynchronous_training_still_learns_the_task(tmp_path, tiny_checkpoint) -> None:
    # test_train_loop's learnability check with samples up to one version old, corrected by token TIS
    learnable = ("trainer.max_staleness=1", "trainer.max_steps=8", "rollout.temperature=0.1")
    with _run(tmp_path, tiny_checkpoint, "learns", *learnable) as rl:
        rewards = [row["reward/mean"] for row in rl.train()]
    assert sum(rewards[-2:]) / 2 > sum(rewards[:2]) / 2 + 0.1, rewards


@pytest.mark.slow
def test_multi_turn_scripted_rollouts_stay_within_the_bound(tmp_path, tiny_checkpoint) -> None:
    # Every group of the script is constant: each step runs max_num_gen_batches rounds, two per step, so the
    # producer is always one round ahead of a trainer that takes several per step.
    turns = ("rollout.max_turns=3", "rollout.max_response_tokens=64", "rollout.max_new_tokens_per_turn=16")
    trainer = ("trainer.max_staleness=2", "trainer.max_steps=3", "trainer.log_trajectories=16")
    with _run(tmp_path, tiny_checkpoint, "scripted", *turns, *trainer, scripted=True) as rl:
        rows = rl.train()
    assert all(r["sampling/gen_rounds"] == 2 and r["async/dropped_trajectories"] == 0 for r in rows)
    assert all(r["async/staleness_0"] + r["async/staleness_1"] + r["async/staleness_2"] == 32 for r in rows)
    for row in read_jsonl(rl.trainer.run.trajectories_file):
        traj = Trajectory.from_row(row)
        assert len(traj.turns) >= 2 and len(traj.token_versions) == len(traj.response_ids)
        assert traj.token_versions == sorted(traj.token_versions)  # a later turn never samples with older weights
        assert row["step"] - 1 - traj.policy_version <= 2


def test_a_push_between_calls_versions_the_next_turn(tokenizer) -> None:
    engine = VersionedEngine(ScriptedEngine(tokenizer, ["one two", "three"]), version=4)
    prompt = tokenizer("hi", add_special_tokens=False)["input_ids"]
    params = SamplingParams(max_new_tokens=8)

    async def two_turns() -> tuple[list[int] | None, list[int] | None]:
        first = await engine.agenerate(prompt, params)
        await engine.apush({}, 5)  # a script has no weights to load
        second = await engine.agenerate([*prompt, *first.token_ids], params)
        return first.versions, second.versions

    first, second = asyncio.run(two_turns())
    assert first is not None and set(first) == {4} and second is not None and set(second) == {5}


def test_a_turn_spanning_a_weight_load_is_corrected_token_by_token(tiny_model, tokenizer) -> None:
    """Weights loaded after the third sampled token: the tokens before carry version 0 and the log-probs of the
    old weights, the ones after version 1 and the new weights' (on the kept KV); the token-level correction
    against the old policy is 1 before and the ratio of each token's own sampler after."""
    engine = HFEngine(tiny_model, tokenizer, own_copy=True, kv_reuse=False)
    old = copy.deepcopy(engine.model)
    new = {
        k: v + 0.05 * torch.randn(v.shape, generator=torch.Generator().manual_seed(0))
        for k, v in old.state_dict().items()
    }
    loads_after = 3

    def stream(_: list[int]) -> None:
        stream.calls += 1  # type: ignore[attr-defined]
        if stream.calls == loads_after:  # type: ignore[attr-defined]
            engine.update_weights(new, version=1)  # between two forwards, as a push from the trainer is

    stream.calls = 0  # type: ignore[attr-defined]
    engine.on_tokens = stream
    prompt = tokenizer("hello there", add_special_tokens=False)["input_ids"]
    params = SamplingParams(max_new_tokens=8, temperature=1.0, stop=(), seed=3)
    generation = engine.generate([prompt], params)[0]
    n = len(generation.token_ids)
    assert n == 8 and generation.versions == [0] * loads_after + [1] * (n - loads_after)

    with torch.no_grad():  # the old policy's log-probs of the sampled tokens, teacher-forced
        ids = torch.tensor([prompt + generation.token_ids])
        logp = torch.log_softmax(old(input_ids=ids).logits[0, len(prompt) - 1 : -1].float(), -1)
        learner = logp.gather(1, torch.tensor(generation.token_ids)[:, None])[:, 0]
    sampler = torch.tensor(generation.logprobs)
    assert torch.allclose(sampler[:loads_after], learner[:loads_after], atol=1e-4)
    assert not torch.allclose(sampler[loads_after:], learner[loads_after:], atol=1e-3)

    cap = 2.0
    applied = correction_weights(learner[None], sampler[None], torch.ones(1, n), "token_tis", cap)
    expected = torch.clamp(torch.exp(learner - sampler), max=cap)
    assert torch.allclose(applied.weights[0], expected, atol=1e-6)
    assert torch.allclose(applied.weights[0, :loads_after], torch.ones(loads_after), atol=1e-3)


@pytest.mark.slow
def test_a_resumed_async_run_neither_loses_nor_repeats_a_step(tmp_path, tiny_checkpoint) -> None:
    # Without the filter every step takes exactly one round: the prompts of step s are fixed by the cursor.
    common = ("trainer.max_staleness=1", "trainer.filter_groups=false", "trainer.log_trajectories=16")
    with _run(tmp_path / "whole", tiny_checkpoint, "whole", "trainer.max_steps=4", *common) as rl:
        rl.train()
        whole = rl.trainer
    with _run(tmp_path / "cut", tiny_checkpoint, "cut", "trainer.max_steps=2", "trainer.save_every=1", *common) as rl:
        rl.train()  # the producer has a round in flight when this run ends
    with _run(tmp_path / "cut", tiny_checkpoint, "cut", "trainer.max_steps=4", *common) as rl:
        assert rl.resume()
        rl.train()
        resumed = rl.trainer

    def prompts_per_step(trainer) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for row in read_jsonl(trainer.run.trajectories_file):
            out.setdefault(row["step"], []).append(row["example"]["id"])
        return {step: sorted(ids) for step, ids in out.items()}

    assert [r["step"] for r in read_jsonl(resumed.run.metrics_file)] == [1, 2, 3, 4]
    assert prompts_per_step(resumed) == prompts_per_step(whole)
    assert resumed.cursor.state_dict() == whole.cursor.state_dict()


def test_rows_from_before_versions_read_as_synchronous_samples() -> None:
    row = {"step": 3, "response_ids": [5, 6], "model_mask": [1, 1]}
    upgraded = upgrade_row(row)
    assert upgraded["policy_version"] == 2 and upgraded["token_versions"] == [2, 2]
    assert upgrade_row({"step": None, "response_ids": [5]})["policy_version"] == 0


def test_stale_samples_are_corrected_and_prompts_not_skipped() -> None:
    with pytest.raises(ValueError, match="rollout_correction"):
        load_config(None, ["trainer.max_staleness=1", "trainer.rollout_correction=none"])
    with pytest.raises(ValueError, match="skip_constant"):  # it would change the prompt order sampled ahead
        load_config(None, ["trainer.max_staleness=1", "trainer.skip_constant.enabled=true"])
    assert resolve_correction(load_config(None, ["trainer.max_staleness=0"])) == "none"  # the trainer's own model
    assert resolve_correction(load_config(None, ["trainer.max_staleness=2"])) == "token_tis"


def test_an_engine_sharing_the_trainers_model_is_refused(tmp_path, tiny_checkpoint) -> None:
    config = load_config(
        None,
        [
            f"model.name={tiny_checkpoint}",
            f"run.output_dir={tmp_path}",
            "run.name=shared",
            *SETTINGS,
            "trainer.max_staleness=1",
        ],
    )
    run = RunDir.create(config)
    with pytest.raises(ValueError, match="own copy"):
        build_rl_run(
            config, run, make_accelerator(config, run.root), examples(), score=lower_half, make_engine=HFEngine
        )
