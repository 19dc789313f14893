"""GRESO skipping: what is predicted, with which probability, how exploration adapts, and that the history resumes.

Probabilities are checked by hand (1 - p ** streak); the drawer is driven with a real cursor and hand-built groups.
"""

from __future__ import annotations

import json

import pytest

from tapo.algo.prompt_skipping import (
    ALL_RIGHT,
    ALL_WRONG,
    MIXED,
    adapt_explore,
    constant_streak,
    group_outcome,
    kind_prior,
    skip_probability,
)
from tapo.config.schema import SkipConstantConfig
from tapo.data.schema import Example
from tapo.records import RewardBreakdown, Trajectory
from tapo.train.cursor import PromptCursor
from tapo.train.prompt_history import PromptDrawer, PromptHistory

ON = SkipConstantConfig(enabled=True, explore_init=0.5, explore_min=0.1, explore_step=0.1, kind_window=2)
OWN_ONLY = ON.model_copy(update={"kind_window": 0})  # each prompt's own history only


def _example(i: int, kind: str = "single_hop") -> Example:
    return Example(id=f"q{i}", question=f"question {i}", data_source="tapo_mini", golds=["x"], meta={"kind": kind})


def _group(example: Example, accs: list[bool]) -> list[Trajectory]:
    group = []
    for acc in accs:
        traj = Trajectory([1], example=example)
        traj.reward = RewardBreakdown(format_ok=True, score=float(acc), penalty=0.0, total=float(acc), acc=acc)
        group.append(traj)
    return group


def test_outcome_and_streak():
    assert group_outcome(False, True) == MIXED
    assert group_outcome(True, True) == ALL_RIGHT and group_outcome(True, False) == ALL_WRONG
    assert constant_streak([]) == (MIXED, 0)
    assert constant_streak([ALL_RIGHT, ALL_RIGHT, MIXED]) == (MIXED, 0)
    assert constant_streak([ALL_WRONG, MIXED, ALL_RIGHT, ALL_RIGHT]) == (ALL_RIGHT, 2)
    assert constant_streak([ALL_RIGHT, ALL_WRONG]) == (ALL_WRONG, 1)  # a streak is of one outcome


def test_skip_probability_is_one_minus_explore_to_the_streak():
    explore = {ALL_RIGHT: 0.5, ALL_WRONG: 0.2}
    assert skip_probability(ALL_RIGHT, 1, explore) == 0.5
    assert skip_probability(ALL_RIGHT, 3, explore) == 1 - 0.125
    assert skip_probability(ALL_WRONG, 2, explore) == pytest.approx(1 - 0.04)
    assert skip_probability(MIXED, 0, explore) == 0.0


def test_kind_prior_needs_a_full_window_of_one_constant_outcome():
    assert kind_prior([ALL_RIGHT, ALL_RIGHT, ALL_RIGHT], 3) == (ALL_RIGHT, 1)
    assert kind_prior([MIXED, ALL_RIGHT, ALL_RIGHT], 2) == (ALL_RIGHT, 1)  # only the last two count
    assert kind_prior([ALL_RIGHT, ALL_RIGHT], 3) == (MIXED, 0)  # too few groups yet
    assert kind_prior([ALL_RIGHT, ALL_WRONG, ALL_RIGHT], 3) == (MIXED, 0)
    assert kind_prior([ALL_RIGHT] * 5, 0) == (MIXED, 0)  # window 0: no prior


def test_exploration_moves_toward_the_target_and_stays_in_bounds():
    assert adapt_explore(0.5, observed=0.4, target=0.15, step=0.1, floor=0.1) == pytest.approx(0.4)
    assert adapt_explore(0.5, observed=0.1, target=0.15, step=0.1, floor=0.1) == pytest.approx(0.6)
    assert adapt_explore(0.15, observed=0.9, target=0.15, step=0.1, floor=0.1) == 0.1
    assert adapt_explore(0.95, observed=0.0, target=0.15, step=0.1, floor=0.1) == 1.0


def test_history_adapts_each_outcome_apart():
    history = PromptHistory(ON)
    history.adapt([ALL_RIGHT, ALL_RIGHT, MIXED, MIXED])  # all right: 50 % > 15 %; all wrong: 0 % <= 15 %
    assert history.explore == {ALL_RIGHT: pytest.approx(0.4), ALL_WRONG: pytest.approx(0.6)}


def test_a_prompt_uses_its_own_streak_else_its_kinds_prior():
    history = PromptHistory(ON)
    solved, fresh, other = _example(0), _example(1), _example(2, kind="code")
    history.record(solved, ALL_RIGHT, step=0)
    assert history.skip_probability(solved) == 0.5
    assert history.skip_probability(fresh) == 0.0  # its kind has one group, the window is two
    history.record(solved, ALL_RIGHT, step=1)
    assert history.skip_probability(solved) == 0.75  # streak 2: 1 - 0.5 ** 2
    assert history.skip_probability(fresh) == 0.5  # the kind's last two groups were all right: a streak of one
    assert history.skip_probability(other) == 0.0  # another kind
    history.record(solved, MIXED, step=2)
    assert history.skip_probability(solved) == 0.0 and history.skip_probability(fresh) == 0.0
    assert history.prompts["q0"] == [(0, ALL_RIGHT), (1, ALL_RIGHT), (2, MIXED)]


def test_history_keeps_only_the_latest_outcomes():
    history = PromptHistory(ON.model_copy(update={"history": 2}))
    for step, outcome in enumerate([ALL_WRONG, ALL_WRONG, ALL_WRONG]):
        history.record(_example(0), outcome, step)
    assert history.prompts["q0"] == [(1, ALL_WRONG), (2, ALL_WRONG)]
    assert history.skip_probability(_example(0)) == 0.75  # the streak is capped at the kept history


def _drawer(n: int = 8, config: SkipConstantConfig = ON) -> PromptDrawer:
    examples = [_example(i) for i in range(n)]
    return PromptDrawer(PromptCursor(n, seed=0, shuffle=False), examples, config, seed=1)


def test_off_the_drawer_is_the_cursor():
    drawer = _drawer(config=SkipConstantConfig())
    assert drawer.take(3, step=0, round=0) == [0, 1, 2]
    drawer.record([_group(_example(3), [True] * 4)], [True], step=0)
    assert drawer.end_step() == {} and drawer.state_dict() == {}


def test_skipped_prompts_use_no_rollout_and_the_cursor_fetches_replacements():
    drawer = _drawer(config=OWN_ONLY)
    history = drawer.history
    assert history is not None
    history.explore = {ALL_RIGHT: 0.1, ALL_WRONG: 0.1}
    for i in (0, 1, 2):  # three prompts solved twice in a row: skipped with probability 1 - 0.1 ** 2 = 0.99
        for step in (0, 1):
            history.record(_example(i), ALL_RIGHT, step)
    kept = drawer.take(3, step=2, round=0)
    assert kept == [3, 4, 5]  # this seed skips all three (each at 0.99): the cursor moved on to replace them
    assert drawer.cursor.position == 6
    groups = [
        _group(drawer.examples[i], accs)
        for i, accs in zip(kept, ([True, False], [True, True], [False] * 2), strict=True)
    ]
    drawer.record(groups, [False, True, True], step=2)
    row = drawer.end_step()
    assert row["sampling/skipped_prompts"] == 3 and row["sampling/skipped_frac"] == 0.5
    assert row["sampling/explore_all_right"] == pytest.approx(0.1)  # 1/3 all right > 15 %: down, held at the floor
    assert row["sampling/explore_all_wrong"] == pytest.approx(0.1)  # 1/3 all wrong > 15 %
    assert drawer.end_step()["sampling/skipped_prompts"] == 0  # counters are per step


def test_a_skipped_prompt_comes_back_next_epoch():
    drawer = _drawer(n=4, config=OWN_ONLY)
    assert drawer.history is not None
    drawer.history.explore = {ALL_RIGHT: 0.1, ALL_WRONG: 0.1}
    drawer.history.record(_example(0), ALL_WRONG, step=0)
    drawer.history.record(_example(0), ALL_WRONG, step=1)
    first = drawer.take(3, step=2, round=0)
    assert first == [1, 2, 3] and drawer.cursor.epoch == 1
    drawer.history.explore = {ALL_RIGHT: 1.0, ALL_WRONG: 1.0}  # exploring fully: nothing is skipped
    assert drawer.take(1, step=3, round=0) == [0]  # the new epoch offers the skipped prompt first again


def test_skipping_is_seeded_by_step_and_round():
    def skipped(step: int, round: int) -> list[int]:
        drawer = _drawer(n=64)
        assert drawer.history is not None
        for i in range(64):
            drawer.history.record(_example(i), ALL_RIGHT, step=0)  # every prompt skipped with probability 0.5
        return drawer.take(16, step, round)

    assert skipped(1, 0) == skipped(1, 0)
    assert skipped(1, 0) != skipped(2, 0) and skipped(1, 0) != skipped(1, 1)


def test_a_round_of_all_constant_prompts_stops_skipping_after_an_epoch():
    drawer = _drawer(n=4)
    assert drawer.history is not None
    drawer.history.explore = {ALL_RIGHT: 1e-9, ALL_WRONG: 1e-9}
    for i in range(4):
        drawer.history.record(_example(i), ALL_RIGHT, step=0)
    assert len(drawer.take(2, step=1, round=0)) == 2
    assert drawer.end_step()["sampling/skipped_prompts"] == 4


def test_the_history_round_trips_through_the_trainer_state():
    drawer = _drawer()
    drawer.record([_group(_example(0), [True] * 2), _group(_example(1), [True, False])], [True, False], step=0)
    drawer.end_step()
    state = json.loads(json.dumps(drawer.state_dict()))  # trainer_state.json
    restored = _drawer()
    restored.load_state_dict(state)
    assert restored.history is not None and drawer.history is not None
    assert restored.history.prompts == drawer.history.prompts and restored.history.kinds == drawer.history.kinds
    assert restored.history.explore == drawer.history.explore
    assert restored.take(4, step=1, round=0) == drawer.take(4, step=1, round=0)
    empty = _drawer()
    empty.load_state_dict({"cursor": {"epoch": 0, "position": 0}})  # a checkpoint from a run with skipping off
    assert empty.history is not None and empty.history.prompts == {}


def test_explore_floor_above_start_is_one_clear_error():
    with pytest.raises(ValueError, match=r"explore_min=0\.6 is above explore_init=0\.5: the floor"):
        SkipConstantConfig(explore_min=0.6, explore_init=0.5)
