"""A local BM25 index (bm25s) over a ``{id, title, text}`` corpus: Search-R1's sparse retriever without Java.

Passages are indexed as ``title + text`` with lower-casing, English stop words and Snowball stemming. The score
matrix is saved by bm25s as ``.npy`` files and memory-mapped on load when the index is large, so a Wikipedia-size
index serves queries without being read into memory.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import Stemmer
from bm25s.tokenization import Tokenizer

from tapo.tools.search.corpus import CorpusStore, Passage, publish_dir, read_meta, write_corpus

# bm25s sets its own logger to DEBUG on import, so "Building index from tokens" reached the console of every index
# build whatever the root level; its warnings still show.
logging.getLogger("bm25s").setLevel(logging.WARNING)

KIND = "bm25"
VOCAB_FILE = "vocab.tokenizer.json"
MMAP_THRESHOLD_BYTES = 512 * 1024**2
"""Indexes whose score arrays exceed this are memory-mapped by default: loading them would cost that much RAM."""

_STEMMER_LANGUAGE = "english"
_STOPWORDS = "en"
_WORDS = re.compile(r"(?u)\b\w\w+\b")  # bm25s' default splitter, so queries split like the corpus


def _tokenizer() -> Tokenizer:
    return Tokenizer(lower=True, stopwords=_STOPWORDS, stemmer=Stemmer.Stemmer(_STEMMER_LANGUAGE))


def _score_bytes(index_dir: Path) -> int:
    return sum(path.stat().st_size for path in index_dir.glob("*.index.npy"))


class BM25Index:
    """Build with ``BM25Index.build``, open with ``BM25Index.load``; ``search`` is safe to call from many threads."""

    def __init__(self, index_dir: Path, mmap: bool | None = None) -> None:
        index_dir = Path(index_dir)
        meta = read_meta(index_dir)
        if meta.get("kind") != KIND:
            raise ValueError(f"{index_dir} holds a {meta.get('kind')!r} index, not a {KIND!r} one")
        self.index_dir = index_dir
        self.meta = meta
        self.mmap = _score_bytes(index_dir) > MMAP_THRESHOLD_BYTES if mmap is None else mmap
        self._bm25 = bm25s.BM25.load(str(index_dir), mmap=self.mmap, load_corpus=False, show_progress=False)
        self._tokenizer = _tokenizer()
        self._tokenizer.load_vocab(str(index_dir), VOCAB_FILE)
        self._stopwords = frozenset(self._tokenizer.stopwords)
        self._corpus = CorpusStore(index_dir)

    @classmethod
    def build(cls, rows: Iterable[dict[str, Any]], out_dir: Path, show_progress: bool = False) -> BM25Index:
        """Index ``rows`` (validated one by one; a bad row raises ``CorpusError``) into ``out_dir`` and open it.

        Rows are streamed: only token ids stay in memory, the text goes straight to the stored corpus.
        """
        tokenizer = _tokenizer()
        meta: dict[str, Any] = {"kind": KIND, "stemmer": _STEMMER_LANGUAGE, "stopwords": _STOPWORDS}
        with publish_dir(Path(out_dir), meta) as staging:
            texts = (f"{row['title']}\n{row['text']}" for row in write_corpus(rows, staging))
            token_ids = list(tokenizer.streaming_tokenize(texts, update_vocab=True, allow_empty=False))
            bm25 = bm25s.BM25()
            bm25.index(tokenizer.to_tokenized_tuple(token_ids), show_progress=show_progress)
            bm25.save(str(staging), show_progress=False)
            tokenizer.save_vocab(str(staging), VOCAB_FILE)
            meta["num_docs"] = len(token_ids)
            meta["vocab_size"] = len(tokenizer.stem_to_sid)
        return cls.load(out_dir)

    @classmethod
    def load(cls, index_dir: str | os.PathLike[str], mmap: bool | None = None) -> BM25Index:
        """Open a built index; ``mmap=None`` memory-maps it when its score arrays exceed ``MMAP_THRESHOLD_BYTES``."""
        return cls(Path(index_dir), mmap=mmap)

    def __len__(self) -> int:
        return len(self._corpus)

    def _query_ids(self, query: str) -> list[int]:
        """Token ids of the query's known stems. Pure lookups: bm25s' own query path caches every word it sees,
        which would grow without bound in a long-running server and mutate shared state across threads."""
        words = _WORDS.findall(query.lower())
        stem, vocab = self._tokenizer.stemmer, self._tokenizer.stem_to_sid
        ids = {vocab.get(stem(word)) for word in words if word not in self._stopwords}
        return sorted(i for i in ids if i is not None)

    def search(self, query: str, k: int) -> list[Passage]:
        """The ``k`` best passages for ``query``, best first; passages sharing no term with it are left out."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        """``search`` for each query, in order."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        k = min(k, len(self))
        results = []
        for query in queries:
            ids = self._query_ids(query)
            if not ids:
                results.append([])
                continue
            scores = self._bm25.get_scores_from_ids(ids)
            top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
            top = top[np.lexsort((top, -scores[top]))]  # best first, ties by corpus order: deterministic
            results.append([self._corpus.passage(int(row), scores[row]) for row in top if scores[row] > 0])
        return results
