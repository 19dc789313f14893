"""The tool registry: never raises, limits concurrency, times out, builds from the config."""

from __future__ import annotations

import asyncio
import time

import pytest

from tapo.config.schema import ToolsConfig
from tapo.tools.base import ToolResult
from tapo.tools.catalog import build_tools
from tapo.tools.code.tool import CodeTool
from tapo.tools.registry import ToolRegistry


class SleepTool:
    """A real tool that waits (an input of seconds) and tracks how many calls overlap."""

    name = "sleep"

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.closed = False

    async def call(self, tool_input: str) -> ToolResult:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            seconds = float(tool_input)  # bad input raises: the registry must turn that into text
            await asyncio.sleep(seconds)
            return ToolResult(f"slept {seconds}")
        finally:
            self.active -= 1

    async def aclose(self) -> None:
        self.closed = True


def test_unknown_tool_is_text_not_error():
    registry = ToolRegistry({"sleep": SleepTool()})
    result = asyncio.run(registry.call("browse", "x"))
    assert not result.ok and "Unknown tool 'browse'" in result.text and "sleep" in result.text


def test_exception_and_timeout_become_text():
    registry = ToolRegistry({"sleep": SleepTool()}, call_timeout_s=0.2)
    broken, slow = asyncio.run(registry.call_many([("sleep", "not a number"), ("sleep", "5")]))
    assert not broken.ok and "ValueError" in broken.text and broken.error.startswith("ValueError")
    assert not slow.ok and slow.error == "timeout" and "0.2 s" in slow.text
    assert 0.15 < slow.latency_s < 1.0


def test_call_many_is_concurrent_under_the_limit_and_ordered():
    tool = SleepTool()
    registry = ToolRegistry({"sleep": tool}, max_concurrency=3)
    start = time.perf_counter()
    results = asyncio.run(registry.call_many([("sleep", str(0.1 + i / 1000)) for i in range(9)]))
    elapsed = time.perf_counter() - start
    assert [r.text for r in results] == [f"slept {0.1 + i / 1000}" for i in range(9)]
    assert tool.peak == 3 and 0.3 <= elapsed < 0.9  # three waves of three


def test_aclose_closes_all_tools():
    tool = SleepTool()
    asyncio.run(ToolRegistry({"sleep": tool}).aclose())
    assert tool.closed


def test_build_tools_code_only_and_validation():
    registry = build_tools(ToolsConfig(max_concurrency=4, call_timeout_s=9), enabled={"code"})
    assert registry.names == ["code"] and isinstance(registry.tools["code"], CodeTool)
    assert registry.max_concurrency == 4 and registry.call_timeout_s == 9
    result = asyncio.run(registry.call("code", "print(6 * 7)"))
    assert result.ok and result.text == "42"
    assert build_tools(ToolsConfig(), enabled=set()).names == []
    with pytest.raises(ValueError, match="unknown tools"):
        build_tools(ToolsConfig(), enabled={"browser"})
