"""Guidance (trainer.guidance): an expert member in groups where the policy never succeeds.

The loss is checked by hand on numbers (what weight an expert token gets, that the policy's members keep DAPO's
loss); the injection through the real trainer, the real tools and the real reward on TAPO-mini questions, with a
tiny model as the policy being updated.
"""

from __future__ import annotations

import math

import pytest
import torch

from tapo.algo.guidance import expert_token_weight, groups_to_guide, mixed_policy_loss, shaped_probability
from tapo.algo.loss import ClipConfig, dapo_loss
from tapo.config import load_config
from tapo.data.io import load_examples
from tapo.data.mini import MiniSizes, build_mini
from tapo.data.mini.oracle_plan import OraclePlan
from tapo.engines.scripted import ScriptedEngine
from tapo.io.runs import RunDir
from tapo.records import Trajectory
from tapo.train.run import build_rl_run
from tapo.train.setup import make_accelerator

pytestmark = pytest.mark.usefixtures("one_thread")


def test_only_groups_without_a_success_are_guided_in_order_up_to_the_budget():
    acc = torch.tensor([[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert groups_to_guide(acc, 2) == [0, 2]
    assert groups_to_guide(acc, 10) == [0, 2, 3]
    assert groups_to_guide(acc, 0) == []
    assert groups_to_guide(torch.ones(2, 4), 5) == []


def test_an_expert_token_gets_luffys_shaping_weight():
    # p = 0.5, gamma = 0.1: f = 0.5 / 0.6, d f / d log p = gamma p / (p + gamma)^2 = 0.05 / 0.36
    logp = torch.log(torch.tensor([[0.5, 0.1, 1e-4]]))
    assert shaped_probability(logp, 0.1)[0, 0].item() == pytest.approx(0.5 / 0.6)
    weights = expert_token_weight(logp, 0.1)[0]
    assert weights[0].item() == pytest.approx(0.05 / 0.36)
    assert weights[1].item() == pytest.approx(0.25)  # the peak, where p = gamma
    assert weights[2].item() == pytest.approx(0.1 * 1e-4 / (1e-4 + 0.1) ** 2)  # still > p / 10: not vanishing as p
    with pytest.raises(ValueError, match="gamma must be > 0"):
        shaped_probability(logp, 0.0)


def _rows() -> tuple[torch.Tensor, ...]:
    """Two rows of three tokens: row 0 the policy's (advantage -1), row 1 the expert's (advantage +2)."""
    logp = torch.log(torch.tensor([[0.3, 0.6, 0.2], [0.5, 0.1, 0.9]]))  # [B=2, T=3]
    old = torch.log(torch.tensor([[0.25, 0.6, 0.3], [1.0, 1.0, 1.0]]))  # the expert's old: the script's p = 1
    adv = torch.tensor([[-1.0, -1.0, -1.0], [2.0, 2.0, 0.0]])  # [B, T]; the expert's last token is a tool output
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    return logp, old, adv, mask


def test_expert_tokens_get_the_shaped_gradient_unclipped_and_the_policy_row_keeps_dapo():
    logp, old, adv, mask = _rows()
    leaf = logp.clone().requires_grad_(True)
    out = mixed_policy_loss(leaf, old, adv, mask, torch.tensor([0, 1]), 5.0, 0.1, ClipConfig())
    out.loss.backward()
    grad = leaf.grad
    assert grad is not None
    # expert row: d loss / d log p = -A * gamma p / (p + gamma)^2 / global_tokens, even though the ratio p / 1 = 0.1 is
    # far below PPO's 1 - 0.2 (clipping would have given it no gradient)
    assert grad[1, 0].item() == pytest.approx(-2.0 * (0.1 * 0.5 / 0.6**2) / 5.0, rel=1e-5)
    assert grad[1, 1].item() == pytest.approx(-2.0 * 0.25 / 5.0, rel=1e-5)
    assert grad[1, 2].item() == 0.0  # out of the mask
    # policy row: exactly DAPO's gradient with the same denominator
    alone = logp.clone().requires_grad_(True)
    dapo = dapo_loss(alone, old, adv, mask * torch.tensor([[1.0], [0.0]]), 5.0, ClipConfig())
    dapo.loss.backward()
    assert alone.grad is not None
    assert torch.allclose(grad[0], alone.grad[0])
    shaped = -(2.0 * 0.5 / 0.6 + 2.0 * 0.1 / 0.2) / 5.0
    assert out.loss.item() == pytest.approx(dapo.loss.item() + shaped, rel=1e-5)
    assert out.stats["guided_token_frac"] == pytest.approx(2 / 5)


def test_without_an_expert_row_the_loss_is_dapo_exactly():
    logp, old, adv, mask = _rows()
    mixed = mixed_policy_loss(logp, old, adv, mask, torch.tensor([0, 0]), 5.0, 0.1)
    assert mixed.loss.item() == dapo_loss(logp, old, adv, mask, 5.0).loss.item()
    assert mixed.stats["guided_loss"] == 0.0


# ---- through the trainer: real tools, real reward, TAPO-mini ----------------------------------------------------


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    out = tmp_path_factory.mktemp("mini")
    build_mini(out, seed=3, sizes=MiniSizes(train=60, validation=20, test=20))
    return out


def _config(tmp_path, mini, tiny_checkpoint, *overrides: str):
    """The pipeline profiles' caps (every oracle plan fits them), TAPO-mini's index, 2 prompts x 4, guidance on."""
    return load_config(
        None,
        [
            f"model.name={tiny_checkpoint}", f"run.output_dir={tmp_path}", "run.name=guided",
            f"tools.search.backend.index_dir={mini / 'index'}", "tools.search.cache.enabled=false",
            "tools.search.topk=1", "data.template=minimal", "data.shuffle=false",
            "rollout.max_turns=3", "rollout.max_obs_tokens=128", "rollout.max_response_tokens=512",
            "rollout.max_new_tokens_per_turn=96", "reward.overlong.buffer=128",
            "trainer.prompts_per_step=2", "trainer.group_size=4", "trainer.mini_batch_size=8",
            "trainer.micro_batch_size=4", "trainer.max_num_gen_batches=1", "trainer.warmup_steps=0",
            "trainer.guidance.enabled=true", *overrides,
        ],
    )  # fmt: skip


def _policy(tokenizer, right: set[str]) -> ScriptedEngine:
    """A "policy" that answers at once: the gold answer to the questions in ``right``, a wrong one to the others."""

    def script(context: list[int], turn: int) -> str:
        text = tokenizer.decode(context)
        answer = next((gold for question, gold in right_answers.items() if question in text), "nobody")
        return f"<think> I know it. </think>\n<answer> {answer} </answer>"

    right_answers = {q: a for q, a in (item.split("\0") for item in right)}
    return ScriptedEngine(tokenizer, script)


def test_a_group_with_no_success_gets_one_expert_that_succeeds_and_a_group_with_one_gets_none(
    tmp_path, mini, tiny_checkpoint
):
    train = load_examples(mini / "train.jsonl")
    solved = next(e for e in train if e.meta["kind"] == "single_hop")
    unsolved = next(e for e in train if e.meta["kind"] == "search_code")
    config = _config(tmp_path, mini, tiny_checkpoint, "trainer.guidance.max_per_step=2")
    run = RunDir.create(config)
    accelerator = make_accelerator(config, run.root)
    right = {f"{solved.question}\0{solved.meta['answer']}"}
    rl = build_rl_run(config, run, accelerator, [solved, unsolved], make_engine=lambda model, tok: _policy(tok, right))
    with rl:
        trainer = rl.trainer
        batch, stats = trainer.collect()
        by_question = {group[0].example.id: group for group in batch}
        assert [t.origin for t in by_question[solved.id]] == ["policy"] * 4  # it had successes: left alone
        assert all(t.scored.acc for t in by_question[solved.id])
        guided = by_question[unsolved.id]
        assert [t.origin for t in guided] == ["policy", "policy", "policy", "expert"]
        assert [t.scored.acc for t in guided] == [False, False, False, True]  # the real reward scored the expert
        expert = guided[-1]
        plan = OraclePlan.of(unsolved)
        assert plan is not None and [turn.action for turn in expert.turns] == [*plan.tools, "answer"]
        assert "code" in plan.tools and expert.turns[plan.tools.index("code")].ok  # the sandbox really ran it
        assert expert.prompt_ids == guided[0].prompt_ids  # the same prompt as its group
        assert stats["guidance/injected"] == 1.0 and stats["guidance/failed_groups"] == 1.0
        assert stats["guidance/unavailable"] == 0.0
        # both groups the policy sampled were constant (all right, all wrong): the expert does not change that count
        assert stats["sampling/informative_frac"] == 0.0
        prepared = {id(p.traj): p for p in trainer.prepare(batch)}
        assert prepared[id(expert)].advantage > 0
        assert all(prepared[id(t)].advantage < 0 for t in guided[:3])
        assert all(prepared[id(t)].advantage == 0 for t in by_question[solved.id])
        update = trainer.update(batch)
        assert update["actor/guided_token_frac"] > 0  # the expert's tokens were in the loss
        assert math.isfinite(update["actor/loss"])
        policy_tokens = sum(t.n_model_tokens for group in batch for t in group if t.origin == "policy")
        assert update["rollout/sampler_tokens"] == policy_tokens  # the expert is outside the rollout correction


def test_an_expert_row_round_trips_and_old_rows_read_as_the_policys():
    traj = Trajectory(prompt_ids=[1], response_ids=[2], model_mask=[1], logprobs=[0.0], origin="expert")
    assert Trajectory.from_row(traj.to_row()).origin == "expert"
    old = traj.to_row()
    del old["origin"]
    assert Trajectory.from_row(old).origin == "policy"


@pytest.mark.slow
def test_a_tiny_model_that_never_succeeds_gets_experts_up_to_the_budget_and_trains_on_them(
    tmp_path, mini, tiny_checkpoint
):
    """The tiny random model samples (it answers nothing right): of its two all-fail groups, max_per_step=1 lets one
    get an expert; a training step then runs on the mixed group."""
    train = load_examples(mini / "train.jsonl")
    questions = [next(e for e in train if e.meta["kind"] == kind) for kind in ("multi_hop", "code")]
    config = _config(tmp_path, mini, tiny_checkpoint, "trainer.guidance.max_per_step=1", "trainer.max_steps=1")
    run = RunDir.create(config)
    with build_rl_run(config, run, make_accelerator(config, run.root), questions) as rl:
        (row,) = rl.trainer.fit()
    assert row["guidance/failed_groups"] == 2.0 and row["guidance/injected"] == 1.0
    assert row["sampled/acc"] == 0.0  # what the policy did: the expert is not counted as its success
    assert row["reward/acc"] == 1 / 8  # the trained batch: one expert among 2 x 4
    assert row["actor/guided_token_frac"] > 0
