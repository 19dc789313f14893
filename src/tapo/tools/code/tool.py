"""``CodeTool``: the ``code`` tag backed by a local :class:`PythonSandbox`."""

from __future__ import annotations

import time

from tapo.config.schema import SandboxCodeConfig
from tapo.tools.base import ToolResult
from tapo.tools.code.output import failure, format_output
from tapo.tools.code.sandbox import PythonSandbox, SandboxRun


def run_text(run: SandboxRun, config: SandboxCodeConfig) -> str:
    """What the model reads of a sandbox run (the local tool's text and the code server's ``stdout``)."""
    memory = config.call_memory_mb if run.memory_exceeded else None
    return format_output(run.stdout, run.stderr_tail, run.exit_code, run.timed_out, config.timeout_s, memory)


def run_to_result(run: SandboxRun, config: SandboxCodeConfig) -> ToolResult:
    """Turn a sandbox run into what the model reads; the program's own errors are results, not tool failures."""
    return ToolResult(
        text=run_text(run, config),
        ok=run.ok,
        latency_s=run.duration_s,
        error=failure(run.exit_code, run.timed_out, run.memory_exceeded),
        metadata={
            "exit_code": run.exit_code,
            "timed_out": run.timed_out,
            "memory_exceeded": run.memory_exceeded,
            "isolated": run.isolated,
            "stdout_bytes": run.stdout_bytes,
        },
    )


class CodeTool:
    """Runs each ``<code>`` block in a fresh sandbox process."""

    name = "code"

    def __init__(self, config: SandboxCodeConfig | None = None, sandbox: PythonSandbox | None = None) -> None:
        self.config = config or SandboxCodeConfig()
        self.sandbox = sandbox or PythonSandbox(self.config)

    async def call(self, tool_input: str) -> ToolResult:
        start = time.perf_counter()
        try:
            run = await self.sandbox.run(tool_input)
        except OSError as error:  # the sandbox could not even start (fd or process exhaustion on the host)
            message = f"[The Python sandbox could not start: {error}]"
            return ToolResult(message, ok=False, latency_s=time.perf_counter() - start, error=str(error))
        return run_to_result(run, self.config)

    async def aclose(self) -> None:
        """Nothing to release: every call's process is gone when the call returns."""
