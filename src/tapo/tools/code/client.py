"""``RemoteCodeTool``: the ``code`` tag backed by an HTTP code server (ours or the original TAPO one)."""

from __future__ import annotations

import time

import httpx

from tapo.tools.base import ToolResult
from tapo.tools.code.output import EMPTY_OUTPUT, timeout_message, truncate

_NETWORK_SLACK_S = 10.0


class RemoteCodeTool:
    """Sends each ``<code>`` block to ``POST {url}/run``; a server failure becomes text, never an exception."""

    name = "code"

    def __init__(self, url: str, timeout_s: float = 2.0, client: httpx.AsyncClient | None = None) -> None:
        self.url = url.rstrip("/") + "/run"
        self.timeout_s = timeout_s
        self._client = client or httpx.AsyncClient(timeout=timeout_s + _NETWORK_SLACK_S)

    async def call(self, tool_input: str) -> ToolResult:
        start = time.perf_counter()
        try:
            response = await self._client.post(self.url, json={"code": tool_input})
            response.raise_for_status()
            payload = response.json()
            stdout, finished = str(payload.get("stdout", "")), bool(payload.get("finished", True))
        except (httpx.HTTPError, ValueError, AttributeError) as error:
            reason = f"{type(error).__name__}: {error}"
            text = f"[The code server is unavailable ({reason}). The code was not run.]"
            return ToolResult(text, ok=False, latency_s=time.perf_counter() - start, error=reason)
        text = truncate(stdout.strip())
        if not finished and "timed out" not in text:
            text = truncate(f"{text}\n{timeout_message(self.timeout_s)}".strip())
        exit_code = payload.get("exit_code", 0 if finished else None)
        ok = finished and exit_code in (0, None)
        return ToolResult(
            text=text or EMPTY_OUTPUT,
            ok=ok,
            latency_s=time.perf_counter() - start,
            error=None if ok else ("timeout" if not finished else f"exit status {exit_code}"),
            metadata={"server_time_s": payload.get("time"), "exit_code": exit_code, "finished": finished},
        )

    async def aclose(self) -> None:
        await self._client.aclose()
