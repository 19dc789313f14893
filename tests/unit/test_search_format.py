"""Query guards and result text (docs/method.md §2), with properties checked by hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tapo.tools.search.corpus import Passage
from tapo.tools.search.format import NOTHING_FOUND, SearchHits, clean_query, format_hits


@pytest.mark.parametrize(
    "query",
    [
        "",
        "   ",
        "ab",
        "a" * 301,
        "...",
        "???",
        "<query>",
        "[search term]",
        "{question}",
        "your query here",
        "Query.",
        "TODO",
    ],
)
def test_not_meaningful_queries_are_refused(query: str) -> None:
    assert clean_query(query) is None


@pytest.mark.parametrize("query", ["Who wrote Hamlet?", "GDP of France 2020", "pi", "a" * 300])
def test_meaningful_queries_pass_whitespace_collapsed(query: str) -> None:
    expected = None if len(query) < 3 else query
    assert clean_query(f"  {query}\n") == expected


def test_result_text_has_panel_first_numbered_docs_and_no_urls() -> None:
    hits = SearchHits(
        passages=(
            Passage("a", "Hamlet", "A tragedy by\nWilliam Shakespeare, see https://example.com/hamlet for more."),
            Passage("b", "Shakespeare", "English playwright www.example.org born 1564."),
        ),
        panel=Passage("kg", "William Shakespeare", "Playwright. Born: 1564"),
    )
    assert format_hits(hits).splitlines() == [
        "Knowledge panel: (Title: William Shakespeare) Playwright. Born: 1564",
        "Doc 1: (Title: Hamlet) A tragedy by William Shakespeare, see for more.",
        "Doc 2: (Title: Shakespeare) English playwright born 1564.",
    ]


def test_no_hits_is_the_fixed_message() -> None:
    assert format_hits(SearchHits()) == NOTHING_FOUND


@given(st.text(max_size=400))
def test_clean_query_is_bounded_and_idempotent(text: str) -> None:
    query = clean_query(text)
    if query is not None:
        assert 3 <= len(query) <= 300
        assert query == query.strip()
        assert clean_query(query) == query


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)


@given(st.lists(st.tuples(texts, texts), min_size=1, max_size=5))
def test_one_line_per_doc_in_order_without_urls(pairs: list[tuple[str, str]]) -> None:
    hits = SearchHits(passages=tuple(Passage(str(i), t, x + " http://x.y/z") for i, (t, x) in enumerate(pairs)))
    lines = format_hits(hits).split("\n")
    assert len(lines) == len(pairs)
    for number, line in enumerate(lines, start=1):
        assert line.startswith(f"Doc {number}: (Title: ")
        assert "http://" not in line
