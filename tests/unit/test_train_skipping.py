"""Skipping and the informative share inside the real DAPO loop (tiny model, real transformers engine)."""

from __future__ import annotations

import pytest
from test_prompt_skipping import _example, _group
from test_train_loop import _trainer

from tapo.train.informative import informative_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

SKIPPING = [
    "trainer.skip_constant.enabled=true",
    "trainer.skip_constant.kind_window=1",  # one constant group of the (only) kind already predicts the next
    "trainer.skip_constant.explore_init=0.2",
]


def test_informative_share_counts_trajectories_overall_and_per_kind():
    code, other = _example(0, kind="code"), _example(1, kind="multi_hop")
    groups = [_group(code, [True, False]), _group(code, [True, True]), _group(other, [False] * 4)]
    row = informative_metrics(groups, [False, True, True])
    assert row == {
        "sampling/informative_frac": 2 / 8,
        "sampling/all_right_frac": 2 / 8,
        "sampling/all_wrong_frac": 4 / 8,
        "sampling/informative_frac/code": 2 / 4,
        "sampling/all_right_frac/code": 2 / 4,
        "sampling/all_wrong_frac/code": 0.0,
        "sampling/informative_frac/multi_hop": 0.0,
        "sampling/all_right_frac/multi_hop": 0.0,
        "sampling/all_wrong_frac/multi_hop": 1.0,
    }
    assert informative_metrics([], []) == {}


def test_default_off_logs_the_informative_share_and_keeps_no_history(tmp_path, tiny_checkpoint):
    trainer = _trainer(tmp_path, tiny_checkpoint, "trainer.max_steps=1", "trainer.save_every=100")
    (row,) = trainer.fit()
    assert 0.0 <= row["sampling/informative_frac"] == row["sampling/informative_frac/test"] <= 1.0
    assert "sampling/skipped_prompts" not in row
    assert trainer.prompts.history is None and "prompt_history" not in trainer.trainer_state()


def test_skipping_records_every_rolled_out_group_and_resumes_exactly(tmp_path, tiny_checkpoint):
    first = _trainer(tmp_path, tiny_checkpoint, *SKIPPING, "trainer.max_steps=2", "trainer.save_every=1")
    rows = first.fit()
    history = first.prompts.history
    assert history is not None
    recorded = sum(len(outcomes) for outcomes in history.prompts.values())
    assert recorded == sum(r["sampled/prompts"] for r in rows)  # every rolled-out group, no skipped prompt
    for row in rows:
        assert row["sampling/skipped_frac"] == row["sampling/skipped_prompts"] / (
            row["sampling/skipped_prompts"] + row["sampled/prompts"]
        )
        assert 0.05 <= row["sampling/explore_all_right"] <= 1.0

    second = _trainer(tmp_path, tiny_checkpoint, *SKIPPING, "trainer.max_steps=3")
    assert second.resume() and second.prompts.history is not None
    assert second.prompts.history.prompts == history.prompts and second.prompts.history.explore == history.explore
    assert second.cursor.state_dict() == first.cursor.state_dict()
    # the next step's decisions: the resumed run skips and draws exactly what the uninterrupted one would have
    assert second.prompts.take(4, step=2, round=0) == first.prompts.take(4, step=2, round=0)
    assert second.prompts.end_step() == first.prompts.end_step()
