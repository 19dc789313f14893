"""``RemoteCodeTool``: the ``code`` tag backed by an HTTP code server (ours or the original TAPO one)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from tapo.tools.base import ToolResult
from tapo.tools.code.output import EMPTY_OUTPUT, failure, timeout_message, truncate

_NETWORK_SLACK_S = 10.0


_REPLY_TYPES: dict[str, tuple[type, ...]] = {
    "stdout": (str,),
    "finished": (bool,),
    "exit_code": (int, type(None)),
    "time": (int, float, type(None)),
    "memory_exceeded": (bool,),
}


def _checked_reply(payload: Any) -> dict[str, Any]:
    """The server's reply if it has the shape ``{"stdout": str, "finished"?: bool, "exit_code"?: int|null,
    "time"?: number|null, "memory_exceeded"?: bool}``; a ValueError naming the first wrong key otherwise.

    Why check: reading any reply leniently (``str(["x"])``, ``bool("no")``) turned a broken or foreign server
    into successful calls with made-up output, which the reward then trusted.
    """
    if not isinstance(payload, dict):
        raise ValueError(f"the reply is a JSON {type(payload).__name__}, expected an object with 'stdout'")
    if "stdout" not in payload:
        raise ValueError("the reply has no 'stdout'")
    for key, types in _REPLY_TYPES.items():
        value = payload.get(key)
        if key in payload and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ValueError(f"the reply's {key!r} is {json.dumps(value)[:80]}, expected {expected}")
    return payload


def _failed(start: float, error: Exception, template: str) -> ToolResult:
    reason = f"{type(error).__name__}: {error}"
    return ToolResult(f"[{template.format(reason)}]", ok=False, latency_s=time.perf_counter() - start, error=reason)


class RemoteCodeTool:
    """Sends each ``<code>`` block to ``POST {url}/run``; a server failure becomes text, never an exception.

    A request has ``timeout_s`` plus network slack in all, not per read: a server trickling its reply would
    otherwise hold the call for as long as it trickles."""

    name = "code"

    def __init__(self, url: str, timeout_s: float = 2.0, client: httpx.AsyncClient | None = None) -> None:
        self.url = url.rstrip("/") + "/run"
        self.timeout_s = timeout_s
        self.deadline_s = timeout_s + _NETWORK_SLACK_S
        self._client = client or httpx.AsyncClient(timeout=self.deadline_s)

    async def call(self, tool_input: str) -> ToolResult:
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.deadline_s):
                response = await self._client.post(self.url, json={"code": tool_input})
            response.raise_for_status()
            payload = response.json()
        except TimeoutError:
            late = TimeoutError(f"no whole reply within {self.deadline_s:g} s")
            return _failed(start, late, "The code server did not answer ({}). The code's result is unknown.")
        except (httpx.HTTPError, ValueError) as error:
            return _failed(start, error, "The code server is unavailable ({}). The code was not run.")
        try:
            payload = _checked_reply(payload)
        except ValueError as error:
            return _failed(start, error, "The code server's reply is malformed ({}). The code's result is unknown.")
        stdout, finished = payload["stdout"], payload.get("finished", True)
        text = truncate(stdout.strip())
        if not finished and "timed out" not in text:
            text = truncate(f"{text}\n{timeout_message(self.timeout_s)}".strip())
        exit_code = payload.get("exit_code", 0 if finished else None)
        memory_exceeded = payload.get("memory_exceeded", False)
        error = failure(exit_code, not finished, memory_exceeded)
        return ToolResult(
            text=text or EMPTY_OUTPUT,
            ok=error is None,
            latency_s=time.perf_counter() - start,
            error=error,
            metadata={
                "server_time_s": payload.get("time"),
                "exit_code": exit_code,
                "finished": finished,
                "memory_exceeded": memory_exceeded,
            },
        )

    async def aclose(self) -> None:
        await self._client.aclose()
