"""``RetrievalClient``: a client for Search-R1-style ``POST /retrieve`` servers (theirs or ``tapo serve search``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from tapo.tools.search.corpus import Passage
from tapo.tools.search.format import SearchHits
from tapo.tools.search.http import JsonPoster, SearchServiceError


def retrieve_url(url: str) -> str:
    """Accept a server's base URL as well as its ``/retrieve`` endpoint."""
    return url.rstrip("/") + "/retrieve" if urlsplit(url).path in ("", "/") else url


def parse_document(item: Any) -> Passage:
    """A Search-R1 result item (``{"document", "score"}`` or a bare document) as a ``Passage``.

    Documents carry ``contents`` = quoted title, newline, text (wiki-18) or separate ``title``/``text`` fields.
    """
    if not isinstance(item, dict):
        raise SearchServiceError(f"a result item must be an object, got {type(item).__name__}")
    document, score = (item["document"], item.get("score", 0.0)) if "document" in item else (item, 0.0)
    if not isinstance(document, dict):
        raise SearchServiceError("a result's 'document' must be an object")
    if "contents" in document:
        title, _, text = str(document["contents"]).partition("\n")
        title = title.strip().strip('"')
    else:
        title, text = str(document.get("title", "")), str(document.get("text", ""))
    return Passage(id=str(document.get("id", "")), title=title, text=text, score=float(score or 0.0))


class RetrievalClient:
    """Async client of a ``/retrieve`` server; any ``SearchBackend`` consumer can use it.

    Concurrent ``asearch`` calls are coalesced: queries for the same k that arrive within ``batch_window_s`` of
    each other (up to ``max_batch``) travel in one request, as Search-R1's rollout sends them. A round trip costs
    far more than a BM25 lookup, so this multiplies what one server answers when many trajectories search at once.
    """

    def __init__(self, url: str, timeout_s: float = 10.0, max_batch: int = 32, batch_window_s: float = 0.005) -> None:
        if max_batch < 1 or batch_window_s < 0:
            raise ValueError("max_batch must be at least 1 and batch_window_s at least 0")
        self._poster = JsonPoster(retrieve_url(url), timeout_s)
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self._pending: dict[int, list[tuple[str, asyncio.Future[SearchHits]]]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def asearch_many(self, queries: Sequence[str], k: int) -> list[SearchHits]:
        """One request for all ``queries``; results come back in the same order."""
        reply = await self._poster.post({"queries": list(queries), "topk": k, "return_scores": True})
        result = reply.get("result") if isinstance(reply, dict) else None
        if not isinstance(result, list) or len(result) != len(queries):
            raise SearchServiceError("the reply has no 'result' list with one entry per query")
        return [SearchHits(passages=tuple(parse_document(item) for item in items)) for items in result]

    async def asearch(self, query: str, k: int) -> SearchHits:
        if self.max_batch == 1:
            return (await self.asearch_many([query], k))[0]
        loop = asyncio.get_running_loop()  # the run's one loop: its futures and timers live as long as the client
        future: asyncio.Future[SearchHits] = loop.create_future()
        batch = self._pending.setdefault(k, [])
        batch.append((query, future))
        if len(batch) >= self.max_batch:
            self._flush(k)
        elif k not in self._timers:
            self._timers[k] = loop.call_later(self.batch_window_s, self._flush, k)
        return await future

    def _flush(self, k: int) -> None:
        timer = self._timers.pop(k, None)
        if timer is not None:
            timer.cancel()
        batch = self._pending.pop(k, [])
        if batch:
            task = asyncio.ensure_future(self._send(batch, k))
            self._sending.add(task)  # keep a reference until done, or the task may be collected mid-flight
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[str, asyncio.Future[SearchHits]]], k: int) -> None:
        """One request for the batch; each waiter gets its own result, or the shared error."""
        try:
            results = await self.asearch_many([query for query, _ in batch], k)
        except Exception as error:
            for _, future in batch:
                if not future.done():  # a caller that timed out has cancelled its future
                    future.set_exception(error)
            return
        for (_, future), hits in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(hits)

    async def aclose(self) -> None:
        """Send what waits for its batch window, wait for the requests in flight (each ends by its deadline; a
        request still running after one more time-out is cancelled), then close the connections."""
        for k in list(self._pending):
            self._flush(k)
        if self._sending:
            _, late = await asyncio.wait(self._sending, timeout=self._poster.timeout_s)
            for task in late:
                task.cancel()
        await self._poster.aclose()
