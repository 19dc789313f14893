"""The HTTP plumbing the remote search clients share: one pooled httpx client per event loop, JSON POST, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


class SearchServiceError(RuntimeError):
    """The search service answered with an error status or with JSON of the wrong shape."""


class JsonPoster:
    """POSTs JSON to one URL and returns the decoded reply.

    An httpx connection pool belongs to the event loop that opened it, so a new loop (a second ``asyncio.run``)
    gets a new client instead of reusing dead connections.
    """

    def __init__(self, url: str, timeout_s: float, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.headers = headers or {}
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, headers=self.headers)
            self._loop = loop
        return self._client

    async def post(self, payload: dict[str, Any]) -> Any:
        response = await self._session().post(self.url, json=payload)
        if response.status_code >= 400:
            raise SearchServiceError(f"{self.url} answered {response.status_code}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError as error:
            raise SearchServiceError(f"{self.url} answered with invalid JSON") from error

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = self._loop = None
