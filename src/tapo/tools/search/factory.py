"""Build the search tool (and open local indexes) from the config: the one place that knows every backend."""

from __future__ import annotations

import os
from pathlib import Path

from tapo.config.schema import SearchConfig
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


def _backend(config: SearchConfig) -> tuple[SearchBackend, str]:
    """The backend and the cache namespace naming it (a rebuilt index gets a new build id, so a fresh namespace)."""
    if config.backend in INDEX_KINDS:
        if not config.index_dir:
            raise ValueError(f"tools.search.backend={config.backend} needs tools.search.index_dir")
        meta = read_meta(Path(config.index_dir))
        if meta.get("kind") != config.backend:
            raise ValueError(
                f"tools.search.index_dir holds a {meta.get('kind')} index but tools.search.backend={config.backend}"
            )
        return LocalBackend(load_index(config.index_dir)), f"{config.backend}:{meta.get('build_id')}"
    if config.backend == "remote":
        if not config.url:
            raise ValueError("tools.search.backend=remote needs tools.search.url (a Search-R1 /retrieve server)")
        from tapo.tools.search.client import RetrievalClient

        client = RetrievalClient(
            config.url,
            timeout_s=config.timeout_s,
            max_batch=config.remote_max_batch,
            batch_window_s=config.remote_batch_window_ms / 1000,
        )
        return client, f"remote:{config.url}"
    from tapo.tools.search.serper import DEFAULT_URL, SerperClient

    api_key = os.environ.get(config.api_key_env, "")
    if not api_key:
        raise ValueError(
            f"tools.search.backend=serper needs an API key in the environment variable {config.api_key_env}"
        )
    url = config.url or DEFAULT_URL
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
