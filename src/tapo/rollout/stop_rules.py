"""The stop rules of the agent loop: each is one way a trajectory ends, with the finish reason its row records and
the turn it leaves last.

After every model turn the rules of ``AFTER_MODEL_TURN`` are checked in order and the first that holds ends the
trajectory: an answer counts even when it fills the response, and a full response ends the trajectory before the
turn limit is asked about. After an environment insertion only the response cap can end it (the model has not
written since its last check).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tapo.config.schema import RolloutConfig
from tapo.protocol import ANSWER, INVALID, Action
from tapo.records import Trajectory, TrajectoryFinish, Turn


@dataclass(frozen=True)
class TurnEnd:
    """What a rule looks at: the trajectory so far and the limits; after a model turn also its text and first
    action (None when it has none)."""

    trajectory: Trajectory
    config: RolloutConfig
    text: str = ""
    action: Action | None = None


@dataclass(frozen=True)
class Stop:
    """How a trajectory ends: the finish reason its row records and the turn it leaves last (None: no turn)."""

    finish: TrajectoryFinish
    last_turn: Turn | None = None


StopRule = Callable[[TurnEnd], Stop | None]


def answered(end: TurnEnd) -> Stop | None:
    """The model answered: the episode is over, whatever budget is left."""
    if end.action is None or end.action.kind != ANSWER:
        return None
    return Stop("answer", Turn(ANSWER, end.action.content))


def response_full(end: TurnEnd) -> Stop | None:
    """The response reached ``max_response_tokens``: nothing more fits, sampled or inserted."""
    return Stop("length") if len(end.trajectory.response_ids) >= end.config.max_response_tokens else None


def out_of_turns(end: TurnEnd) -> Stop | None:
    """Every one of ``max_turns`` tool turns is spent, so this turn had tools off and did not answer: the trajectory
    ends unanswered, the turn recorded as invalid."""
    if len(end.trajectory.turns) < end.config.max_turns:
        return None
    what = f"<{end.action.kind}> after the turn limit" if end.action else "no valid action"
    return Stop("max_turns", Turn(INVALID, end.text, ok=False, error=f"{what}: tools are off"))


AFTER_MODEL_TURN: tuple[StopRule, ...] = (answered, response_full, out_of_turns)
AFTER_INSERTION: tuple[StopRule, ...] = (response_full,)


def first_stop(rules: tuple[StopRule, ...], end: TurnEnd) -> Stop | None:
    """The stop of the first rule that holds, in ``rules``' order; None: the trajectory goes on."""
    return next((stop for rule in rules if (stop := rule(end)) is not None), None)
