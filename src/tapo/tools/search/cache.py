"""A persistent search cache (sqlite): exact hits by hash of query and k with a TTL, and fuzzy hits for near-duplicate
queries (docs/method.md §2).

The original used Redis; sqlite in WAL mode gives the same sharing between the threads and processes of one
machine without a server to run. Fuzzy lookup: an inverted index of character trigrams finds the stored queries
whose trigram Jaccard with the new one is at least ``trigram_prefilter``; among them, the one with the highest
rapidfuzz similarity wins if that similarity is at least ``fuzzy_threshold``. Both compare normalized queries
(lower-case, punctuation dropped, spaces collapsed), and only entries made for the same k and the same
``namespace`` (the backend: results of one index must never answer for another).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rapidfuzz import fuzz

from tapo.tools.search.corpus import Passage
from tapo.tools.search.format import SearchHits

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, ns TEXT NOT NULL, norm TEXT NOT NULL, k INTEGER NOT NULL, ntri INTEGER NOT NULL,
    created REAL NOT NULL, payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_created ON entries (created);
CREATE TABLE IF NOT EXISTS trigrams (tri TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (tri, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS trigrams_key ON trigrams (key);
"""
_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")
_PURGE_EVERY = 256  # puts between sweeps of expired entries


def normalize_query(query: str) -> str:
    """The form fuzzy matching compares: NFKC, case-folded, punctuation dropped, whitespace collapsed."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", unicodedata.normalize("NFKC", query).casefold())).strip()


def trigrams(text: str) -> set[str]:
    """Character trigrams of `` text `` (padded so short words still have some)."""
    padded = f" {text} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def _exact_key(namespace: str, query: str, k: int) -> str:
    return hashlib.sha256(json.dumps([namespace, query, k]).encode()).hexdigest()


def _dump(hits: SearchHits) -> str:
    return json.dumps({"passages": [asdict(p) for p in hits.passages], "panel": hits.panel and asdict(hits.panel)})


def _load(payload: str) -> SearchHits:
    data = json.loads(payload)
    panel = Passage(**data["panel"]) if data["panel"] else None
    return SearchHits(passages=tuple(Passage(**p) for p in data["passages"]), panel=panel)


class SearchCache:
    """``get``/``put`` search hits; safe to share between threads, and between processes through the same file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        namespace: str = "",
        ttl_s: float = 7 * 24 * 3600,
        fuzzy_threshold: float = 0.9,
        trigram_prefilter: float = 0.3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.namespace = namespace
        self.ttl_s = ttl_s
        self.fuzzy_threshold = fuzzy_threshold
        self.trigram_prefilter = trigram_prefilter
        self._clock = clock
        self._local = threading.local()
        self._lock = threading.Lock()
        self._counts = {"exact_hits": 0, "fuzzy_hits": 0, "misses": 0, "puts": 0}
        with self._connect() as conn:
            conn.executescript(_SCHEMA)
        self.purge_expired()

    def _connect(self) -> sqlite3.Connection:
        """One connection per thread and process (a connection must not cross a fork or be used by two threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _count(self, name: str) -> int:
        with self._lock:
            self._counts[name] += 1
            return self._counts[name]

    def get(self, query: str, k: int) -> tuple[SearchHits, str] | None:
        """The cached hits and how they were found (``"exact"`` or ``"fuzzy"``), or ``None`` on a miss."""
        conn = self._connect()
        fresh_after = self._clock() - self.ttl_s
        row = conn.execute(
            "SELECT payload FROM entries WHERE key = ? AND created >= ?",
            (_exact_key(self.namespace, query, k), fresh_after),
        ).fetchone()
        if row is not None:
            self._count("exact_hits")
            return _load(row[0]), "exact"
        payload = self._fuzzy(conn, query, k, fresh_after)
        if payload is not None:
            self._count("fuzzy_hits")
            return _load(payload), "fuzzy"
        self._count("misses")
        return None

    def _fuzzy(self, conn: sqlite3.Connection, query: str, k: int, fresh_after: float) -> str | None:
        norm = normalize_query(query)
        grams = trigrams(norm)
        if not grams:
            return None
        # Jaccard >= p needs p*|A| <= |B| <= |A|/p: bounds the candidates before counting shared trigrams.
        low, high = self.trigram_prefilter * len(grams), len(grams) / max(self.trigram_prefilter, 1e-9)
        marks = ",".join("?" * len(grams))
        rows = conn.execute(
            f"SELECT e.norm, e.payload, e.ntri, COUNT(*) FROM trigrams t JOIN entries e ON e.key = t.key "
            f"WHERE t.tri IN ({marks}) AND e.ns = ? AND e.k = ? AND e.created >= ? AND e.ntri BETWEEN ? AND ? "
            "GROUP BY e.key",
            (*grams, self.namespace, k, fresh_after, low, high),
        ).fetchall()
        best, best_score = None, self.fuzzy_threshold * 100
        for other, payload, ntri, shared in rows:
            if shared / (len(grams) + ntri - shared) < self.trigram_prefilter:
                continue
            score = fuzz.ratio(norm, other)
            if score >= best_score:
                best, best_score = payload, score
        return best

    def put(self, query: str, k: int, hits: SearchHits) -> None:
        """Store ``hits`` for ``query`` and ``k`` (replacing an older entry), indexing its trigrams."""
        key, norm = _exact_key(self.namespace, query, k), normalize_query(query)
        grams = trigrams(norm)
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM trigrams WHERE key = ?", (key,))
            conn.execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, self.namespace, norm, k, len(grams), self._clock(), _dump(hits)),
            )
            conn.executemany("INSERT OR IGNORE INTO trigrams VALUES (?, ?)", [(gram, key) for gram in grams])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if self._count("puts") % _PURGE_EVERY == 0:
            self.purge_expired()

    def purge_expired(self) -> int:
        """Delete entries older than the TTL; returns how many went."""
        conn = self._connect()
        cutoff = self._clock() - self.ttl_s
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM trigrams WHERE key IN (SELECT key FROM entries WHERE created < ?)", (cutoff,))
            removed = conn.execute("DELETE FROM entries WHERE created < ?", (cutoff,)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return removed

    def __len__(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def metrics(self) -> dict[str, Any]:
        """Counters of this process: exact and fuzzy hits, misses, and the hit rate over all lookups."""
        with self._lock:
            counts = dict(self._counts)
        lookups = counts["exact_hits"] + counts["fuzzy_hits"] + counts["misses"]
        hits = counts["exact_hits"] + counts["fuzzy_hits"]
        return {f"cache_{name}": value for name, value in counts.items()} | {
            "cache_hit_rate": hits / lookups if lookups else 0.0
        }

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
