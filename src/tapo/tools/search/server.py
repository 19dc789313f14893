"""A Search-R1-compatible retrieval server over a local index: ``POST /retrieve`` and ``GET /health``.

Request ``{"queries": [...], "topk": k, "return_scores": bool}``; reply ``{"result": [[doc, ...], ...]}`` where a doc
is ``{"id", "contents"}`` (contents = quoted title, newline, text, as in Search-R1's wiki-18 corpus), wrapped as
``{"document": doc, "score": s}`` when scores are asked for. So Search-R1's servers and this one are
interchangeable. Bad input (invalid JSON, wrong shape, a query over 1 KB, too big a batch) gets a 4xx with a
message; the endpoint is synchronous, so FastAPI runs requests concurrently in its thread pool.
"""

from __future__ import annotations

import json
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from tapo.tools.search.backend import SearchIndex
from tapo.tools.search.corpus import Passage

MAX_QUERY_BYTES = 1024
MAX_QUERIES = 512
MAX_TOPK = 100
MAX_BODY_BYTES = MAX_QUERIES * (MAX_QUERY_BYTES + 16) + 1024


class RetrieveRequest(BaseModel):
    """Search-R1's request; ``topk`` falls back to the server's default like theirs."""

    model_config = ConfigDict(extra="ignore")

    queries: list[str] = Field(max_length=MAX_QUERIES)
    topk: int | None = Field(None, ge=1, le=MAX_TOPK)
    return_scores: bool = False


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _document(passage: Passage, with_score: bool) -> dict[str, Any]:
    document = {"id": passage.id, "contents": passage.contents}
    return {"document": document, "score": passage.score} if with_score else document


def create_app(index: SearchIndex, default_topk: int = 3, name: str = "index") -> FastAPI:
    """The server's app over ``index``; run it with uvicorn (``tapo serve search`` does)."""
    app = FastAPI(title="tapo search", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "index": name, "passages": len(index)}

    @app.post("/retrieve")
    async def retrieve(request: Request) -> JSONResponse:
        body = bytearray()
        async for chunk in request.stream():  # stop reading at the cap: a huge body never sits in memory
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return _error(413, f"request body over {MAX_BODY_BYTES} bytes")
        try:
            parsed = RetrieveRequest.model_validate(json.loads(body))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            return _error(400, f"invalid JSON: {error}")
        except ValidationError as error:
            details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors())
            return _error(422, f"bad request: {details}")
        for position, query in enumerate(parsed.queries):
            if len(query.encode()) > MAX_QUERY_BYTES:
                return _error(413, f"queries[{position}] is over {MAX_QUERY_BYTES} bytes")
        results = await run_in_threadpool(index.search_many, parsed.queries, parsed.topk or default_topk)
        payload = [[_document(p, parsed.return_scores) for p in passages] for passages in results]
        return JSONResponse({"result": payload})

    return app


def serve(index_dir: str, host: str = "127.0.0.1", port: int = 8001, topk: int = 3, mmap: bool | None = None) -> None:
    """Open the index in ``index_dir`` and serve it until interrupted (``tapo serve search``)."""
    from tapo.tools.search.factory import load_index

    index = load_index(index_dir, mmap=mmap)
    app = create_app(index, default_topk=topk, name=str(index_dir))
    # No access log: a training run sends thousands of requests a minute, and logging each one costs throughput.
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
