"""A Search-R1-compatible retrieval server over a local index: ``POST /retrieve`` and ``GET /health``.

Request ``{"queries": [...], "topk": k, "return_scores": bool}``; reply ``{"result": [[doc, ...], ...]}`` where a doc
is ``{"id", "contents"}`` (contents = quoted title, newline, text, as in Search-R1's wiki-18 corpus), wrapped as
``{"document": doc, "score": s}`` when scores are asked for. So Search-R1's servers and this one are
interchangeable, and so is what they accept: Search-R1's trainer sends every query of a rollout step in one
request (512 prompts x 5 samples = 2,560), so the number of queries is not limited; memory is. The body is
capped in bytes, queries are searched (and, for a dense index, embedded) ``SEARCH_BATCH`` at a time in the
thread pool, and the reply is streamed batch by batch, so neither the search nor the reply holds a whole large
request at once. A query over ``MAX_QUERY_BYTES`` is cut there (Search-R1's encoder truncates to 256 tokens
too), and ``topk`` 0 or absent is the server's default, as in theirs. Invalid JSON (bad syntax or UTF-8, nesting
too deep for the parser, an integer over Python's digit limit), a wrong shape or a body over the cap gets a 4xx with
a one-line message, as the code server's; a client that hangs up mid-body is one log line, not a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from tapo.tools.search.backend import SearchIndex
from tapo.tools.search.corpus import Passage

MAX_QUERY_BYTES = 1024
MAX_TOPK = 100
MAX_BODY_BYTES = 32 * 1024 * 1024
SEARCH_BATCH = 64

log = logging.getLogger(__name__)


class RetrieveRequest(BaseModel):
    """Search-R1's request; ``topk`` 0 or None falls back to the server's default like theirs."""

    model_config = ConfigDict(extra="ignore")

    queries: list[str]
    topk: int | None = Field(None, ge=0, le=MAX_TOPK)
    return_scores: bool = False


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _document(passage: Passage, with_score: bool) -> dict[str, Any]:
    document = {"id": passage.id, "contents": passage.contents}
    return {"document": document, "score": passage.score} if with_score else document


def _truncate(query: str) -> str:
    """``query`` cut to ``MAX_QUERY_BYTES`` of UTF-8, never inside a character."""
    encoded = query.encode()
    return query if len(encoded) <= MAX_QUERY_BYTES else encoded[:MAX_QUERY_BYTES].decode(errors="ignore")


async def _results(index: SearchIndex, queries: Sequence[str], k: int, with_scores: bool) -> AsyncIterator[bytes]:
    """``{"result": [...]}`` as JSON, searched and sent ``SEARCH_BATCH`` queries at a time."""
    yield b'{"result":['
    for start in range(0, len(queries), SEARCH_BATCH):
        found = await run_in_threadpool(index.search_many, queries[start : start + SEARCH_BATCH], k)
        lists = ([_document(p, with_scores) for p in passages] for passages in found)
        chunk = ",".join(json.dumps(one, ensure_ascii=False, separators=(",", ":")) for one in lists)
        yield (("," if start else "") + chunk).encode()
    yield b"]}"


def create_app(index: SearchIndex, default_topk: int = 3, name: str = "index", delay_s: float = 0.0) -> FastAPI:
    """The server's app over ``index``; run it with uvicorn (``tapo serve search`` does). ``delay_s`` holds every
    valid ``/retrieve`` that long before searching (without blocking other requests): a local index answers in
    milliseconds, and this stands in for a remote or loaded retriever (benchmarks/bench_async_rl.py)."""
    if delay_s < 0:
        raise ValueError(f"delay_s must be >= 0, got {delay_s}")
    app = FastAPI(title="tapo search", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "index": name, "passages": len(index)}

    @app.post("/retrieve")
    async def retrieve(request: Request) -> JSONResponse:
        body = bytearray()
        try:
            async for chunk in request.stream():  # stop reading at the cap: a huge body never sits in memory
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    return _error(413, f"request body over {MAX_BODY_BYTES} bytes")
        except ClientDisconnect:  # nobody is left to answer; the server goes on
            client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
            log.warning("/retrieve: %s disconnected after %d bytes of its request; dropped", client, len(body))
            return _error(400, "client disconnected before the end of the body")
        try:
            payload = json.loads(body)
        except RecursionError:  # the parser recurses per nesting level: a body of 100k '[' is not a server error
            return _error(400, "invalid JSON: nested too deeply")
        except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, an integer over Python's digit limit
            return _error(400, f"invalid JSON: {error}")
        try:
            parsed = RetrieveRequest.model_validate(payload)
        except ValidationError as error:
            details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors())
            return _error(422, f"bad request: {details}")
        queries = [_truncate(query) for query in parsed.queries]
        if delay_s:
            await asyncio.sleep(delay_s)
        results = _results(index, queries, parsed.topk or default_topk, parsed.return_scores)
        return StreamingResponse(results, media_type="application/json")

    return app


def serve(
    index_dir: str,
    host: str = "127.0.0.1",
    port: int = 8001,
    topk: int = 3,
    mmap: bool | None = None,
    delay_s: float = 0.0,
) -> None:
    """Open the index in ``index_dir`` and serve it until interrupted (``tapo serve search``)."""
    from tapo.tools.search.factory import load_index

    index = load_index(index_dir, mmap=mmap)
    app = create_app(index, default_topk=topk, name=str(index_dir), delay_s=delay_s)
    # No access log: a training run sends thousands of requests a minute, and logging each one costs throughput.
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
