"""The trajectory record: what the policy saw, what it sampled, what the environment inserted.

``response_ids`` interleaves model tokens (``loss_mask`` 1, exactly the ids the engine sampled) and
environment tokens (``loss_mask`` 0: tool outputs and corrective messages, tokenized on their own).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tapo.rewards.breakdown import RewardBreakdown


@dataclass
class Turn:
    """One action of the model and what the environment answered."""

    action: str  # "search", "code", "answer" or "invalid"
    content: str
    output: str = ""
    ok: bool = True
    latency_s: float = 0.0
    error: str | None = None


@dataclass
class Trajectory:
    prompt_ids: list[int]
    response_ids: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    logprobs: list[float | None] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    finish_reason: str = ""
    response_text: str = ""
    example: dict[str, Any] = field(default_factory=dict)
    reward: RewardBreakdown | None = None

    @property
    def n_model_tokens(self) -> int:
        return sum(self.loss_mask)

    @property
    def graded_text(self) -> str:
        """The response text the format check reads: without the corrective messages the environment inserted.

        Those messages name the tags as instructions (``<answer> and </answer>``); they are not the model's
        output, so they must not make its format wrong. Tool outputs stay, inside their ``<response>`` blocks.
        """
        text = self.response_text
        for turn in self.turns:
            if turn.action == "invalid" and turn.output:
                text = text.replace(turn.output, "", 1)
        return text

    @property
    def tool_calls(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for turn in self.turns:
            if turn.action in ("search", "code"):
                counts[turn.action] = counts.get(turn.action, 0) + 1
        return counts

    @property
    def tool_failures(self) -> int:
        return sum(1 for t in self.turns if t.action in ("search", "code") and not t.ok)

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["reward"] = self.reward.to_dict() if self.reward else None
        row["tool_calls"] = self.tool_calls
        row["n_model_tokens"] = self.n_model_tokens
        return row
