"""Stratified prompt order: every step's prompts hold the kinds in proportion, every prompt is drawn once per epoch,
and it composes with skipping."""

from __future__ import annotations

from collections import Counter

from tapo.algo.prompt_skipping import ALL_RIGHT
from tapo.config.schema import SkipConstantConfig
from tapo.data.schema import Example
from tapo.train.cursor import PromptCursor
from tapo.train.prompt_history import PromptDrawer
from tapo.train.strata import group_by_kind, stratified_order

KINDS = ["single_hop"] * 50 + ["multi_hop"] * 30 + ["code"] * 20  # 5 : 3 : 2


def test_a_hand_checked_order():
    # quotas at positions 1..3 for a: 2/3, 4/3, 2 and b: 1/3, 2/3, 1 -> a, b, a
    assert stratified_order({"a": [0, 1], "b": [2]}, ["a", "b"]) == [0, 2, 1]
    assert group_by_kind(["x", "y", "x"]) == {"x": [0, 2], "y": [1]}


def test_each_step_draws_kinds_in_proportion():
    cursor = PromptCursor(len(KINDS), seed=7, strata=KINDS)
    for _ in range(25):  # 2.5 epochs of steps of 10 prompts, crossing epoch boundaries
        counts = Counter(KINDS[i] for i in cursor.take(10))
        assert abs(counts["single_hop"] - 5) <= 1 and abs(counts["multi_hop"] - 3) <= 1
        assert abs(counts["code"] - 2) <= 1


def test_every_prefix_is_within_one_prompt_of_its_quota():
    order = PromptCursor(len(KINDS), seed=3, strata=KINDS)._order(0)
    seen: Counter[str] = Counter()
    for position, index in enumerate(order, start=1):
        seen[KINDS[index]] += 1
        for kind, size in Counter(KINDS).items():
            assert abs(seen[kind] - position * size / len(KINDS)) < 1


def test_every_prompt_is_drawn_once_per_epoch_and_epochs_differ():
    cursor = PromptCursor(len(KINDS), seed=1, strata=KINDS)
    first, second = cursor.take(100), cursor.take(100)
    assert sorted(first) == sorted(second) == list(range(100)) and first != second
    assert cursor.epoch == 2 and cursor.position == 0


def test_unshuffled_stratification_keeps_each_kinds_data_order():
    order = PromptCursor(len(KINDS), shuffle=False, strata=KINDS)._order(0)
    for kind in set(KINDS):
        mine = [i for i in order if KINDS[i] == kind]
        assert mine == sorted(mine)


def test_without_strata_the_order_is_the_plain_shuffle():
    assert PromptCursor(100, seed=5, strata=None).take(100) == PromptCursor(100, seed=5).take(100)


def test_skipping_draws_from_the_stratified_order():
    examples = [
        Example(id=f"q{i}", question="?", data_source="tapo_mini", golds=["x"], meta={"kind": kind})
        for i, kind in enumerate(KINDS)
    ]
    config = SkipConstantConfig(enabled=True, kind_window=0, explore_init=1e-6, explore_min=1e-6)
    drawer = PromptDrawer(PromptCursor(len(KINDS), seed=2, strata=KINDS), examples, config, seed=0)
    assert drawer.history is not None
    solved = [i for i, kind in enumerate(KINDS) if kind == "code"]
    for i in solved:  # every code question solved: skipped with probability 1 - 1e-6
        drawer.history.record(examples[i], ALL_RIGHT, step=0)
    drawn = drawer.take(40, step=1, round=0)
    assert not set(drawn) & set(solved)
    counts = Counter(KINDS[i] for i in drawn)
    assert abs(counts["single_hop"] - 25) <= 1 and abs(counts["multi_hop"] - 15) <= 1  # 5 : 3 among the rest
    assert drawer.end_step()["sampling/skipped_prompts"] == 10  # the code questions among the 50 candidates
