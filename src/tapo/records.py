"""The records that flow from the rollout to the update, the metrics and the files: ``Turn``, ``RewardBreakdown``
and ``Trajectory``, with the one row schema of every ``trajectories.jsonl`` (trainer, evaluator, chat, demos).

``response_ids`` interleaves model tokens (``model_mask`` 1, exactly the ids the engine sampled, with the
engine's log-probs in ``logprobs``) and environment tokens (``model_mask`` 0: tool outputs and corrective
messages, tokenized on their own, log-prob None). These types import only the protocol and the row schema
``Example``, so the rollout that makes them and the rewards that score them never import each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

from tapo.data.schema import Example
from tapo.protocol import INVALID, is_tool_action

# Keys every trajectories.jsonl row carries (see Trajectory.to_row); a row without them is not this schema.
ROW_KEYS = ("example", "prompt_ids", "response_ids", "model_mask", "logprobs", "turns", "finish_reason", "reward")
# Keys of rows written by earlier tapo versions -> today's name. ``model_mask`` was ``loss_mask``, which it is not
# under the no-mask ablation (the loss then counts tool tokens too: tapo.train.trainer.loss_mask_for).
RENAMED_ROW_KEYS = {"loss_mask": "model_mask"}

# Why a trajectory ended, as its row writes it; each is a stop rule of the agent loop (tapo.rollout.stop_rules):
# the model answered, the response reached max_response_tokens, or the turn after the last tool turn did not answer.
TrajectoryFinish = Literal["answer", "length", "max_turns"]
# Who wrote a trajectory's model tokens: the policy (sampled by the engine), or an expert (an oracle plan replayed
# by a scripted engine: the warm start's demonstrations, and the trainer's guidance in groups with no success).
Origin = Literal["policy", "expert"]
# Keys added to the row schema since it was first written, with the value an older row means: rows before ``origin``
# were all sampled by the policy (demonstration files were re-made when it came, but any older one reads as policy).
ADDED_ROW_KEYS: dict[str, Any] = {"origin": "policy"}


class RecordError(ValueError):
    """A record that cannot be used where it is: a trajectory without a reward, a row of another schema."""


@dataclass
class Turn:
    """One action of the model and what the environment answered."""

    action: str  # a tool name, "answer" or "invalid"
    content: str
    output: str = ""
    ok: bool = True
    latency_s: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class RewardBreakdown:
    """The reward of one trajectory, kept whole so metrics and reports can show where it came from."""

    format_ok: bool
    score: float
    penalty: float
    total: float  # score + penalty + tool_bonus: what the advantages are computed from
    acc: bool
    answer: str | None = None
    scorer: str = ""
    format_error: str = ""  # why the format check failed, "" when it passed: what users read when debugging a reward
    tool_bonus: float = 0.0  # reward.tool_cost's term on a right answer (in total; <= 0 under form otc); 0 when off

    @property
    def signal(self) -> float:
        """What dynamic sampling compares inside a group: acc, plus the tool bonus when it is on (two right answers
        with different call counts still teach something; with the bonus off this is TAPO's acc test)."""
        return float(self.acc) + self.tool_bonus

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Trajectory:
    """What the policy saw (``prompt_ids``), sampled and was shown (``response_ids``), and how it scored."""

    prompt_ids: list[int]
    response_ids: list[int] = field(default_factory=list)
    model_mask: list[int] = field(default_factory=list)  # per response token: 1 sampled by the model, 0 inserted
    logprobs: list[float | None] = field(default_factory=list)  # the sampler's, per response token
    turns: list[Turn] = field(default_factory=list)
    finish_reason: TrajectoryFinish | Literal[""] = ""  # "" until the rollout ends it
    response_text: str = ""
    example: Example | None = None  # None only for bare token sequences (unit tests of the update)
    reward: RewardBreakdown | None = None
    # The policy version (optimizer steps the sampling weights had seen) the trajectory started under, and per
    # response token the version that sampled it: they differ when new weights arrive mid-trajectory (asynchronous
    # training, docs/training.md). Only model tokens' entries mean something; inserted tokens repeat the last one.
    policy_version: int = 0
    token_versions: list[int] = field(default_factory=list)
    # "expert": not sampled by the policy, so its sampler log-probs say nothing of the policy; the update trains it
    # with the off-policy correction of tapo.algo.guidance, and the rollout correction leaves it out
    origin: Origin = "policy"

    @property
    def n_model_tokens(self) -> int:
        return sum(self.model_mask)

    @property
    def scored(self) -> RewardBreakdown:
        """The reward, where one is needed: an unscored trajectory is an error, never a silent 0."""
        if self.reward is None:
            about = f" of question {self.example.id!r}" if self.example else ""
            raise RecordError(f"trajectory{about} has no reward: score it before computing advantages or metrics")
        return self.reward

    @property
    def graded_text(self) -> str:
        """The response text the format check reads: without the corrective messages the environment inserted.

        Those messages name the tags as instructions (``<answer> and </answer>``); they are not the model's
        output, so they must not make its format wrong. Tool outputs stay, inside their ``<response>`` blocks.
        """
        text = self.response_text
        for turn in self.turns:
            if turn.action == INVALID and turn.output:
                text = text.replace(turn.output, "", 1)
        return text

    @property
    def tool_calls(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for turn in self.turns:
            if is_tool_action(turn.action):
                counts[turn.action] = counts.get(turn.action, 0) + 1
        return counts

    @property
    def tool_failures(self) -> int:
        return sum(1 for t in self.turns if is_tool_action(t.action) and not t.ok)

    def to_row(self, step: int | None = None) -> dict[str, Any]:
        """The ``trajectories.jsonl`` row: every field, plus ``step`` (training step, None elsewhere) and the
        derived ``tool_calls``/``n_model_tokens`` for readers of the file."""
        row: dict[str, Any] = {"step": step, **asdict(self)}
        row["example"] = self.example.model_dump() if self.example else None
        row["reward"] = self.reward.to_dict() if self.reward else None
        row["tool_calls"] = self.tool_calls
        row["n_model_tokens"] = self.n_model_tokens
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Trajectory:
        """Inverse of :meth:`to_row`; a row of another schema fails with one line naming what it lacks."""
        row = upgrade_row(row)
        missing = [key for key in ROW_KEYS if key not in row]
        if missing:
            raise RecordError(
                f"trajectory row lacks {', '.join(missing)}: not a tapo trajectories.jsonl row "
                "(rows written before tapo kept one schema must be re-generated)"
            )
        return cls(
            prompt_ids=list(row["prompt_ids"]),
            response_ids=list(row["response_ids"]),
            model_mask=list(row["model_mask"]),
            logprobs=list(row["logprobs"]),
            turns=[Turn(**turn) for turn in row["turns"]],
            finish_reason=cast(TrajectoryFinish, str(row["finish_reason"])),  # what to_row wrote
            response_text=str(row.get("response_text", "")),
            example=Example.model_validate(row["example"]) if row["example"] is not None else None,
            reward=RewardBreakdown(**row["reward"]) if row["reward"] is not None else None,
            policy_version=int(row["policy_version"]),
            token_versions=list(row["token_versions"]),
            origin=cast(Origin, str(row["origin"])),
        )


def upgrade_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row with today's key names (:data:`RENAMED_ROW_KEYS`) and every key added since (:data:`ADDED_ROW_KEYS`,
    with the value an older row means), so files written before a change still read.

    Rows from before policy versions were recorded were all sampled synchronously: a training row of step s by the
    weights of s - 1 updates, any other row (evaluation, chat) by the weights it loaded, version 0."""
    if any(old in row for old in RENAMED_ROW_KEYS) or not all(key in row for key in ADDED_ROW_KEYS):
        row = {**ADDED_ROW_KEYS, **{RENAMED_ROW_KEYS.get(key, key): value for key, value in row.items()}}
    if "policy_version" not in row:
        step = row.get("step")
        version = step - 1 if isinstance(step, int) and step > 0 else 0
        row = {**row, "policy_version": version, "token_versions": [version] * len(row.get("response_ids", []))}
    return row
