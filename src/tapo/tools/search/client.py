"""``RetrievalClient``: a client for Search-R1-style ``POST /retrieve`` servers (theirs or ``tapo serve search``)."""

from __future__ import annotations

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
    """Async client of a ``/retrieve`` server; any ``SearchBackend`` consumer can use it."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self._poster = JsonPoster(retrieve_url(url), timeout_s)

    async def asearch_many(self, queries: Sequence[str], k: int) -> list[SearchHits]:
        """One request for all ``queries``; results come back in the same order."""
        reply = await self._poster.post({"queries": list(queries), "topk": k, "return_scores": True})
        result = reply.get("result") if isinstance(reply, dict) else None
        if not isinstance(result, list) or len(result) != len(queries):
            raise SearchServiceError("the reply has no 'result' list with one entry per query")
        return [SearchHits(passages=tuple(parse_document(item) for item in items)) for items in result]

    async def asearch(self, query: str, k: int) -> SearchHits:
        return (await self.asearch_many([query], k))[0]

    async def aclose(self) -> None:
        await self._poster.aclose()
