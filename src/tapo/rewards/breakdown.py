"""The reward of one trajectory, kept whole so metrics and reports can show where it came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RewardBreakdown:
    format_ok: bool
    score: float
    penalty: float
    total: float
    acc: bool
    answer: str | None = None
    scorer: str = ""
    format_error: str = ""  # why the format check failed, "" when it passed: what users read when debugging a reward

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
