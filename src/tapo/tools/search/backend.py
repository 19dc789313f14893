"""The one interface every search backend offers the tool, and the adapter that puts a local index behind it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from tapo.tools.search.corpus import Passage
from tapo.tools.search.format import SearchHits


@runtime_checkable
class SearchIndex(Protocol):
    """A local index (``BM25Index``, ``DenseIndex``): synchronous, thread-safe search over stored passages."""

    def __len__(self) -> int: ...

    def search(self, query: str, k: int) -> list[Passage]: ...

    def search_many(self, queries: Sequence[str], k: int) -> list[list[Passage]]: ...


@runtime_checkable
class SearchBackend(Protocol):
    """Anything that answers a query with ``SearchHits``; raising means the service failed."""

    async def asearch(self, query: str, k: int) -> SearchHits: ...

    async def aclose(self) -> None: ...


class LocalBackend:
    """A local index behind the async interface; searches run in a worker thread so the rollout loop never blocks."""

    def __init__(self, index: SearchIndex) -> None:
        self.index = index

    async def asearch(self, query: str, k: int) -> SearchHits:
        return SearchHits(passages=await asyncio.to_thread(self.index.search, query, k))

    async def aclose(self) -> None:
        return None
