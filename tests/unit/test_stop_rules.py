"""The agent loop's stop rules: which one ends a trajectory when several hold, and what each leaves behind."""

from __future__ import annotations

from tapo.config.schema import RolloutConfig
from tapo.protocol import ANSWER, INVALID, Action
from tapo.records import Trajectory, Turn
from tapo.rollout.stop_rules import AFTER_INSERTION, AFTER_MODEL_TURN, TurnEnd, first_stop

CONFIG = RolloutConfig(max_turns=1, max_response_tokens=8)


def trajectory(tokens: int, turns: int) -> Trajectory:
    return Trajectory(prompt_ids=[1], response_ids=[5] * tokens, turns=[Turn("search", "q")] * turns)


def test_an_answer_wins_over_a_full_response_and_the_turn_limit():
    end = TurnEnd(trajectory(8, 1), CONFIG, "<answer>4</answer>", Action(ANSWER, "4"))
    stop = first_stop(AFTER_MODEL_TURN, end)
    assert stop is not None and stop.finish == "answer" and stop.last_turn == Turn(ANSWER, "4")


def test_a_full_response_wins_over_the_turn_limit_and_leaves_no_turn():
    stop = first_stop(AFTER_MODEL_TURN, TurnEnd(trajectory(8, 1), CONFIG, "<search>q</search>", Action("search", "q")))
    assert stop is not None and (stop.finish, stop.last_turn) == ("length", None)


def test_past_the_turn_limit_the_unanswered_turn_is_recorded_as_invalid():
    stop = first_stop(AFTER_MODEL_TURN, TurnEnd(trajectory(3, 1), CONFIG, "<code>1</code>", Action("code", "1")))
    assert stop is not None and stop.finish == "max_turns"
    assert stop.last_turn == Turn(
        INVALID, "<code>1</code>", ok=False, error="<code> after the turn limit: tools are off"
    )


def test_otherwise_the_trajectory_goes_on():
    assert first_stop(AFTER_MODEL_TURN, TurnEnd(trajectory(3, 0), CONFIG, "thinking")) is None
    assert first_stop(AFTER_INSERTION, TurnEnd(trajectory(7, 1), CONFIG)) is None
    stop = first_stop(AFTER_INSERTION, TurnEnd(trajectory(8, 1), CONFIG))
    assert stop is not None and stop.finish == "length"
