"""What the model reads from a search: query guards, the result text, and the fixed messages (docs/method.md §2).

The messages are fixed strings so that a trained policy sees the same text for the same situation, and so that
evaluation can count them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from tapo.tools.search.corpus import Passage

QUERY_NOT_MEANINGFUL = (
    "The search query is not meaningful. Write a specific query of 3 to 300 characters between <search> and </search>."
)
NOTHING_FOUND = "No results found for this query. Try other keywords."
SEARCH_UNAVAILABLE = "The search engine is unavailable right now. Go on without it or try again later."

MIN_QUERY_CHARS = 3
MAX_QUERY_CHARS = 300

_PLACEHOLDERS = frozenset(
    {
        "query",
        "search query",
        "your query",
        "your query here",
        "query here",
        "search term",
        "search terms",
        "insert query",
        "keywords",
        "keyword",
        "search",
        "question",
        "your question",
        "todo",
        "tbd",
        "n/a",
        "none",
        "null",
        "xxx",
        "placeholder",
        "example",
        "example query",
    }
)
_BRACKETED = re.compile(r"^\s*(<[^<>]*>|\[[^\[\]]*\]|\{[^{}]*\})\s*$")  # <query>, [search term], {question}
_URL = re.compile(r"https?://\S+|www\.\S+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class SearchHits:
    """A backend's answer: passages best first and, from web search, an optional knowledge panel."""

    passages: Sequence[Passage] = field(default_factory=tuple)
    panel: Passage | None = None


def clean_query(tool_input: str) -> str | None:
    """The query to send, or ``None`` when it is not meaningful (empty, a placeholder, too short or too long)."""
    query = _SPACE.sub(" ", tool_input).strip()
    if not MIN_QUERY_CHARS <= len(query) <= MAX_QUERY_CHARS:
        return None
    if not any(char.isalnum() for char in query) or _BRACKETED.match(query):
        return None
    if query.lower().strip(" .:?!\"'`*_-") in _PLACEHOLDERS:
        return None
    return query


def _one_line(text: str) -> str:
    return _SPACE.sub(" ", _URL.sub("", text)).strip()


def format_hits(hits: SearchHits) -> str:
    """``Doc i: (Title: t) snippet`` per passage, one per line, the knowledge panel first; no URLs.

    Returns ``NOTHING_FOUND`` when there is nothing to show.
    """
    lines = []
    if hits.panel is not None:
        lines.append(f"Knowledge panel: (Title: {_one_line(hits.panel.title)}) {_one_line(hits.panel.text)}".rstrip())
    for number, passage in enumerate(hits.passages, start=1):
        lines.append(f"Doc {number}: (Title: {_one_line(passage.title)}) {_one_line(passage.text)}".rstrip())
    return "\n".join(lines) if lines else NOTHING_FOUND
