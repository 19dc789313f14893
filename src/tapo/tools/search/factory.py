"""Build the search tool (and open local indexes) from the config: the one place that knows every backend."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tapo.config.schema import IndexSearchConfig, RemoteSearchConfig, SearchConfig
from tapo.paths import cache_dir
from tapo.tools.base import Tool
from tapo.tools.search.backend import LocalBackend, SearchBackend, SearchIndex
from tapo.tools.search.cache import SearchCache
from tapo.tools.search.corpus import read_meta
from tapo.tools.search.tool import SearchTool

INDEX_KINDS = ("bm25", "dense")


def load_index(index_dir: str | os.PathLike[str], mmap: bool | None = None) -> SearchIndex:
    """Open the index in ``index_dir``, whichever kind ``meta.json`` says it is."""
    kind = read_meta(Path(index_dir)).get("kind")
    if kind == "bm25":
        from tapo.tools.search.bm25 import BM25Index

        return BM25Index.load(index_dir, mmap=mmap)
    if kind == "dense":
        from tapo.tools.search.dense import DenseIndex

        return DenseIndex.load(index_dir, mmap=mmap)
    raise ValueError(f"{index_dir}: unknown index kind {kind!r} (expected one of {', '.join(INDEX_KINDS)})")


def index_meta(backend: IndexSearchConfig) -> dict[str, Any]:
    """The ``meta.json`` of the configured index, read without loading the index (commands check it before any
    work); ``ValueError``/``FileNotFoundError`` naming the key when it is unset, missing or of another kind."""
    if not backend.index_dir:
        raise ValueError(
            f"tools.search.backend={backend.kind} needs tools.search.backend.index_dir: set it to an index from "
            "`tapo index build CORPUS --out DIR` or `tapo data build mini --out DIR` (DIR/index), give the "
            "--config the model was trained with, or turn search off with tools.enabled=[code]"
        )
    meta = read_meta(Path(backend.index_dir))
    if meta.get("kind") != backend.kind:
        raise ValueError(
            f"tools.search.backend.index_dir holds a {meta.get('kind')} index but tools.search.backend={backend.kind}"
        )
    return meta


def _backend(config: SearchConfig) -> tuple[SearchBackend, str]:
    """The backend and the cache namespace naming it (a rebuilt index gets a new build id, so a fresh namespace)."""
    backend = config.backend
    if isinstance(backend, IndexSearchConfig):
        meta = index_meta(backend)
        return LocalBackend(load_index(backend.index_dir)), f"{backend.kind}:{meta.get('build_id')}"
    if isinstance(backend, RemoteSearchConfig):
        from tapo.tools.search.client import RetrievalClient

        client = RetrievalClient(
            backend.url,
            timeout_s=config.timeout_s,
            max_batch=backend.max_batch,
            batch_window_s=backend.batch_window_ms / 1000,
        )
        return client, f"remote:{backend.url}"
    from tapo.tools.search.serper import DEFAULT_URL, SerperClient

    api_key = os.environ.get(backend.api_key_env, "")
    if not api_key:
        raise ValueError(
            f"tools.search.backend=serper needs an API key in the environment variable {backend.api_key_env}"
        )
    url = backend.url or DEFAULT_URL
    return SerperClient(api_key, url=url, timeout_s=config.timeout_s), f"serper:{url}"


def build_cache(config: SearchConfig, namespace: str) -> SearchCache | None:
    """The sqlite cache the config asks for, holding entries under ``namespace``; ``None`` when caching is off."""
    settings = config.cache
    if not settings.enabled:
        return None
    return SearchCache(
        settings.path or cache_dir() / "search.sqlite",
        namespace=namespace,
        ttl_s=settings.ttl_s,
        fuzzy_threshold=settings.fuzzy_threshold,
        trigram_prefilter=settings.trigram_prefilter,
    )


def build_search_tool(config: SearchConfig) -> Tool:
    """The ``search`` tool for ``config``; a missing setting raises ``ValueError`` naming the config key to fix."""
    backend, namespace = _backend(config)
    return SearchTool(backend, topk=config.topk, cache=build_cache(config, namespace), timeout_s=config.timeout_s)
