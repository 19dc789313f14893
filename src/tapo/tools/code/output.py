"""What the model reads after a ``<code>`` block (docs/method.md §2): stdout, the end of a traceback, truncation, hints.

The same rules apply to a local sandbox run and to a remote server's answer; :func:`truncate` is idempotent, so
applying it to text a server already truncated changes nothing.
"""

from __future__ import annotations

import signal

HEAD_CHARS = 1000
TAIL_CHARS = 1000
MAX_CHARS = HEAD_CHARS + TAIL_CHARS
EMPTY_OUTPUT = "[The code ran but printed nothing. Use print(...) to show the values you need, e.g. print(result).]"


def truncate(text: str) -> str:
    """Over 2000 characters: the first 1000, a ``...`` line, the last 1000."""
    if len(text) <= MAX_CHARS:
        return text
    return f"{text[:HEAD_CHARS]}\n...\n{text[-TAIL_CHARS:]}"


def timeout_message(timeout_s: float) -> str:
    return f"[Execution timed out after {timeout_s:g} s and was stopped. Make the code faster or do less work.]"


def signal_message(exit_code: int) -> str:
    """A process killed by a signal (shell convention 128 + n) has no traceback: say what happened."""
    try:
        name = signal.Signals(exit_code - 128).name
    except ValueError:
        name = f"signal {exit_code - 128}"
    hint = " (CPU time limit exceeded)" if name == "SIGXCPU" else ""
    return f"[The process was killed by {name}{hint}.]"


def memory_message(memory_mb: int) -> str:
    return (
        f"[The program went over its memory limit of {memory_mb} MB (all its processes together) and the system "
        "killed it. Use less memory.]"
    )


def failure(exit_code: int | None, timed_out: bool, memory_exceeded: bool) -> str | None:
    """The ``ToolResult.error`` of a run (None for a success), the same for a local sandbox and a code server."""
    if memory_exceeded:
        return "memory limit"
    if timed_out:
        return "timeout"
    return None if exit_code in (0, None) else f"exit status {exit_code}"


def format_output(
    stdout: str,
    error_tail: str = "",
    exit_code: int | None = 0,
    timed_out: bool = False,
    timeout_s: float = 0.0,
    memory_exceeded_mb: int | None = None,
) -> str:
    """Compose the model-facing text of one execution; ``memory_exceeded_mb`` is the call's memory bound when the
    kernel killed a process of the call for going over it."""
    parts = [stdout.rstrip("\n")] if stdout.strip() else []
    if memory_exceeded_mb is not None:
        parts.append(memory_message(memory_exceeded_mb))
    elif timed_out:
        parts.append(timeout_message(timeout_s))
    elif exit_code:
        if error_tail.strip():
            parts.append(error_tail.strip("\n"))
        elif exit_code > 128:
            parts.append(signal_message(exit_code))
        else:
            parts.append(f"[The process exited with status {exit_code}.]")
    if not parts:
        return EMPTY_OUTPUT
    return truncate("\n".join(parts))
