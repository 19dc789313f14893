"""The tool contract. A tool never raises into the rollout: every failure becomes text for the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class ToolResult:
    text: str
    ok: bool = True
    latency_s: float = 0.0
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Tool(Protocol):
    name: str

    async def call(self, tool_input: str) -> ToolResult: ...

    async def aclose(self) -> None: ...
