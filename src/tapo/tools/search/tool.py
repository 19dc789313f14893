"""``SearchTool``: the ``search`` tag's tool. Guards the query, asks the cache, then the backend, and formats.

It never raises: a bad query, a failing or slow service, or a broken cache all become one of the fixed messages
(docs/method.md §2) so the trajectory goes on. Real backend calls are counted, like the original counted API calls.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from tapo.tools.base import ToolResult
from tapo.tools.search.backend import SearchBackend
from tapo.tools.search.cache import SearchCache
from tapo.tools.search.format import (
    QUERY_NOT_MEANINGFUL,
    SEARCH_UNAVAILABLE,
    SearchHits,
    clean_query,
    format_hits,
)

logger = logging.getLogger(__name__)


class SearchTool:
    """The search tool over any ``SearchBackend``, with an optional ``SearchCache``."""

    name = "search"

    def __init__(
        self, backend: SearchBackend, topk: int = 3, cache: SearchCache | None = None, timeout_s: float = 10.0
    ) -> None:
        if topk < 1:
            raise ValueError(f"topk must be at least 1, got {topk}")
        self.backend = backend
        self.topk = topk
        self.cache = cache
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._counts = {"calls": 0, "real_calls": 0, "failures": 0, "rejected": 0}

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    async def call(self, tool_input: str) -> ToolResult:
        start = time.perf_counter()
        self._count("calls")
        query = clean_query(tool_input) if isinstance(tool_input, str) else None
        if query is None:
            self._count("rejected")
            return ToolResult(QUERY_NOT_MEANINGFUL, ok=False, error="query not meaningful", latency_s=0.0)
        source = "backend"
        try:
            found = await self._cached(query)
            if found is None:
                self._count("real_calls")
                hits = await asyncio.wait_for(self.backend.asearch(query, self.topk), self.timeout_s)
                await self._store(query, hits)
            else:
                hits, source = found
        except Exception as error:  # a tool never raises into the rollout
            self._count("failures")
            logger.warning("search failed for %r: %s: %s", query, type(error).__name__, error)
            return ToolResult(
                SEARCH_UNAVAILABLE,
                ok=False,
                error=f"{type(error).__name__}: {error}",
                latency_s=time.perf_counter() - start,
                metadata={"query": query},
            )
        return ToolResult(
            format_hits(hits),
            latency_s=time.perf_counter() - start,
            metadata={"query": query, "source": source, "hits": len(hits.passages)},
        )

    async def _cached(self, query: str) -> tuple[SearchHits, str] | None:
        """A cache lookup that degrades to a miss when the cache itself fails (a locked or broken file)."""
        if self.cache is None:
            return None
        try:
            found = await asyncio.to_thread(self.cache.get, query, self.topk)
        except Exception as error:
            logger.warning("search cache lookup failed: %s", error)
            return None
        if found is None:
            return None
        hits, kind = found
        return hits, f"cache_{kind}"

    async def _store(self, query: str, hits: SearchHits) -> None:
        if self.cache is None:
            return
        try:
            await asyncio.to_thread(self.cache.put, query, self.topk, hits)
        except Exception as error:
            logger.warning("search cache write failed: %s", error)

    def metrics(self) -> dict[str, Any]:
        """Calls, real backend calls, failures, rejected queries, and the cache's counters when there is one."""
        with self._lock:
            counts = dict(self._counts)
        return {f"search_{name}": value for name, value in counts.items()} | (
            self.cache.metrics() if self.cache is not None else {}
        )

    async def aclose(self) -> None:
        await self.backend.aclose()
        if self.cache is not None:
            self.cache.close()
