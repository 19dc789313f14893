"""The search tool: local BM25 and dense indexes, Search-R1 and Serper-style clients, a cache, a retrieval server.

``build_search_tool`` (in ``factory``) is what the tool registry calls; ``BM25Index`` and ``Passage`` are what the
data and pipeline code use to build and query corpora.
"""

from tapo.tools.search.bm25 import BM25Index
from tapo.tools.search.corpus import CorpusError, Passage
from tapo.tools.search.format import SearchHits

__all__ = ["BM25Index", "CorpusError", "Passage", "SearchHits"]
