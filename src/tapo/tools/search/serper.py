"""``SerperClient``: web search through a Serper-style API (the original TAPO's search engine).

Request: ``POST {"q": query, "num": k}`` with the key in the ``X-API-KEY`` header. Reply: ``organic[]`` results
with ``title``/``snippet`` and, sometimes, a ``knowledgeGraph`` panel, which the model sees first. Links are dropped.
"""

from __future__ import annotations

from typing import Any

from tapo.tools.search.corpus import Passage
from tapo.tools.search.format import SearchHits
from tapo.tools.search.http import JsonPoster, SearchServiceError

DEFAULT_URL = "https://google.serper.dev/search"


def _panel(graph: Any) -> Passage | None:
    """The knowledge panel as a passage: its type, description and attributes in one line."""
    if not isinstance(graph, dict) or not graph.get("title"):
        return None
    parts = [str(graph[key]) for key in ("type", "description") if graph.get(key)]
    attributes = graph.get("attributes")
    if isinstance(attributes, dict):
        parts.extend(f"{name}: {value}" for name, value in attributes.items())
    return Passage(id="knowledgeGraph", title=str(graph["title"]), text=". ".join(parts))


def parse_serper(reply: Any, k: int) -> SearchHits:
    """The first ``k`` organic results (those with a title or snippet) and the knowledge panel."""
    if not isinstance(reply, dict):
        raise SearchServiceError("the reply is not a JSON object")
    organic = reply.get("organic", [])
    if not isinstance(organic, list):
        raise SearchServiceError("'organic' is not a list")
    passages = [
        Passage(id=str(item.get("link", index)), title=str(item.get("title", "")), text=str(item.get("snippet", "")))
        for index, item in enumerate(organic)
        if isinstance(item, dict) and (item.get("title") or item.get("snippet"))
    ]
    return SearchHits(passages=tuple(passages[:k]), panel=_panel(reply.get("knowledgeGraph")))


class SerperClient:
    """Async Serper-style web search; the API key is sent in ``X-API-KEY``."""

    def __init__(self, api_key: str, url: str = DEFAULT_URL, timeout_s: float = 10.0) -> None:
        if not api_key:
            raise ValueError("a Serper API key is required")
        self._poster = JsonPoster(url, timeout_s, headers={"X-API-KEY": api_key})

    async def asearch(self, query: str, k: int) -> SearchHits:
        return parse_serper(await self._poster.post({"q": query, "num": k}), k)

    async def aclose(self) -> None:
        await self._poster.aclose()
