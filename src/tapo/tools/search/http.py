"""The HTTP plumbing the remote search clients share: one pooled httpx client, JSON POST, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


class SearchServiceError(RuntimeError):
    """The search service answered with an error status or with JSON of the wrong shape."""


class JsonPoster:
    """POSTs JSON to one URL and returns the decoded reply, within ``timeout_s`` for the whole request.

    The deadline is on the whole request, not on each read (httpx's own time-out): a server that trickles its
    reply a byte at a time would otherwise hold the request, and every caller that waits for it, without bound.
    Its httpx connection pool belongs to the event loop that first uses it: the run's one loop (``tapo.io.event_loop``).
    """

    def __init__(self, url: str, timeout_s: float, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.headers = headers or {}
        self._client = httpx.AsyncClient(timeout=timeout_s, headers=self.headers)

    async def post(self, payload: dict[str, Any]) -> Any:
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._client.post(self.url, json=payload)
        except TimeoutError:
            raise SearchServiceError(f"{self.url} did not answer within {self.timeout_s:g} s") from None
        if response.status_code >= 400:
            raise SearchServiceError(f"{self.url} answered {response.status_code}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError as error:
            raise SearchServiceError(f"{self.url} answered with invalid JSON") from error

    async def aclose(self) -> None:
        await self._client.aclose()
