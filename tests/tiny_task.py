"""A task a tiny random model can learn in a few steps, shared by the training-loop tests and their workers.

The reward is the share of sampled tokens from the lower half of the vocabulary, so a working policy-gradient
loop must raise it quickly; the settings keep every rollout a few tokens long and tool-free.
"""

from __future__ import annotations

from tapo.data.schema import Example
from tapo.records import RewardBreakdown, Trajectory

VOCAB = 49152  # the SmolLM2 tokenizer's size, shared by the tiny model

# Config overrides of the task (model, run directory and run name come from each test).
SETTINGS = [
    "trainer.lr=3e-3",
    "trainer.warmup_steps=0",
    "trainer.prompts_per_step=4",
    "trainer.group_size=4",
    "trainer.mini_batch_size=8",
    "trainer.micro_batch_size=4",
    "data.template=compact_no_tools",
    "rollout.max_turns=0",
    "rollout.max_new_tokens_per_turn=6",
    "rollout.max_response_tokens=8",
    "reward.overlong.enabled=false",
]

# One training step of two prompts with two samples each, every group kept whatever its rewards: the tool-run tests
# (a user's tools, an environment) check one step's metrics, not learning.
ONE_STEP = [
    "trainer.max_steps=1",
    "trainer.prompts_per_step=2",
    "trainer.group_size=2",
    "trainer.mini_batch_size=4",
    "trainer.micro_batch_size=4",
    "trainer.filter_groups=false",
]


def lower_half(trajs: list[Trajectory]) -> None:
    """Reward = share of the model's sampled ids below vocab/2; acc = that share above one half."""
    for traj in trajs:
        ids = [t for t, m in zip(traj.response_ids, traj.model_mask, strict=True) if m] or [VOCAB]
        share = sum(t < VOCAB // 2 for t in ids) / len(ids)
        traj.reward = RewardBreakdown(True, share, 0.0, share, share > 0.5)


def examples(n: int = 16) -> list[Example]:
    return [Example(id=f"q{i}", question=f"say something {i}", data_source="test", golds=["x"]) for i in range(n)]
