"""HTTP code server speaking the original TAPO API, so code execution can run on another machine.

``POST /run {"code": "..."}`` → ``{"stdout", "finished", "time"}`` (plus ``exit_code`` and ``memory_exceeded``).
``stdout`` is already the model-facing text (truncated, with the traceback tail, a time-out or memory notice).
Requests run concurrently, each in its own sandbox, up to ``tools.code.max_parallel`` at once. Oversized code (413),
a body that is not JSON (400: bad syntax, bad UTF-8, nesting too deep for the parser, an integer too long) and JSON
of the wrong shape (422) are refused with a one-line message before anything runs; a client that hangs up mid-body
is one log line, not a traceback.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from tapo.config.schema import SandboxCodeConfig
from tapo.tools.code.sandbox import PythonSandbox
from tapo.tools.code.tool import run_text

MAX_CODE_BYTES = 64 * 1024
_MAX_BODY_BYTES = 4 * MAX_CODE_BYTES  # JSON escaping can grow the code; anything beyond is refused unread

log = logging.getLogger(__name__)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


async def _read_body(request: Request) -> bytes | None:
    """The body, or None once it grows past the cap (read in chunks, never all of a huge upload)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > _MAX_BODY_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY_BYTES:
            return None
    return bytes(body)


def create_app(config: SandboxCodeConfig | None = None) -> FastAPI:
    config = config or SandboxCodeConfig()
    sandbox = PythonSandbox(config)
    app = FastAPI(title="tapo code server", version="1")

    @app.get("/health")
    async def health() -> dict[str, object]:
        return {"status": "ok", "isolated": sandbox.isolated, "layers": sandbox.layers, "timeout_s": config.timeout_s}

    @app.post("/run")
    async def run(request: Request) -> JSONResponse:
        try:
            body = await _read_body(request)
        except ClientDisconnect:  # nobody is left to answer; nothing ran
            client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
            log.warning("/run: %s disconnected before the end of its request; dropped", client)
            return _error(400, "client disconnected before the end of the body")
        if body is None:
            return _error(413, f"request body over {_MAX_BODY_BYTES} bytes")
        try:
            payload = json.loads(body)
        except RecursionError:  # the parser recurses per nesting level: a body of 100k '[' is not a server error
            return _error(400, "body is not valid JSON: nested too deeply")
        except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, an integer over Python's digit limit
            return _error(400, f"body is not valid JSON: {error}")
        if not isinstance(payload, dict) or not isinstance(payload.get("code"), str):
            return _error(422, 'expected a JSON object {"code": "<python source>"}')
        code = payload["code"]
        if len(code.encode("utf-8", errors="replace")) > MAX_CODE_BYTES:
            return _error(413, f"code over {MAX_CODE_BYTES} bytes")
        result = await sandbox.run(code)
        return JSONResponse(
            {
                "stdout": run_text(result, config),
                "finished": not result.timed_out,
                "time": round(result.duration_s, 4),
                "exit_code": result.exit_code,
                "memory_exceeded": result.memory_exceeded,
            }
        )

    return app


def serve(config: SandboxCodeConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the server until interrupted."""
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=port, log_level="info")
