"""Tools by tag name, called under one concurrency limit and one outer time-out.

The rollout calls tools through the registry only, so whatever a tool does wrong (raises, hangs, is unknown)
comes back as a :class:`ToolResult` with ``ok=False`` and text the model can read; the trajectory goes on.
Which tools a run has is resolved from its config by :mod:`tapo.tools.catalog`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from tapo.io.deadline import CLOSE_TIMEOUT_S, close_all
from tapo.tools.base import Tool, ToolResult

log = logging.getLogger(__name__)


class ToolRegistry:
    """Dispatches ``(tag, input)`` calls to tools; at most ``max_concurrency`` run at once."""

    def __init__(self, tools: dict[str, Tool], max_concurrency: int = 32, call_timeout_s: float = 30.0) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if call_timeout_s <= 0:
            raise ValueError(f"call_timeout_s must be > 0, got {call_timeout_s}")
        self.tools = dict(tools)
        self.max_concurrency = max_concurrency
        self.call_timeout_s = call_timeout_s
        # Bound to the run's one event loop on first contention (tapo.io.event_loop): use a registry on that loop only.
        self._limit = asyncio.Semaphore(max_concurrency)

    @property
    def names(self) -> list[str]:
        return sorted(self.tools)

    async def call(self, name: str, tool_input: str) -> ToolResult:
        """Run one tool call; never raises (except cancellation of the caller)."""
        tool = self.tools.get(name)
        if tool is None:
            available = ", ".join(self.names) or "none"
            text = f"[Unknown tool '{name}'. Available tools: {available}.]"
            return ToolResult(text, ok=False, error=f"unknown tool {name!r}")
        async with self._limit:
            start = time.perf_counter()
            try:
                result = await asyncio.wait_for(tool.call(tool_input), timeout=self.call_timeout_s)
            except TimeoutError:
                text = f"[The {name} tool did not answer within {self.call_timeout_s:g} s. Try a simpler request.]"
                result = ToolResult(text, ok=False, error="timeout")
            except Exception as error:
                log.warning("tool %s raised %s: %s", name, type(error).__name__, error, exc_info=True)
                text = f"[The {name} tool failed: {type(error).__name__}: {error}]"
                result = ToolResult(text, ok=False, error=f"{type(error).__name__}: {error}")
            result.latency_s = time.perf_counter() - start
        return result

    async def call_many(self, calls: list[tuple[str, str]]) -> list[ToolResult]:
        """Run calls concurrently (under the limit); results in the order of ``calls``."""
        return list(await asyncio.gather(*(self.call(name, tool_input) for name, tool_input in calls)))

    async def aclose(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Close every tool at once within ``timeout_s`` in all; one that fails or hangs in closing (a request a
        server trickles out) is logged and left behind, so the caller goes on to write its results."""
        await close_all({f"the {name} tool": tool.aclose for name, tool in self.tools.items()}, timeout_s)
