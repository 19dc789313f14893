"""Bounded capture of a child's output stream: the first and last bytes only, however much is written.

Model-written code can print gigabytes; the host keeps at most ``head + tail`` bytes per stream and keeps
draining the pipe, so the child never blocks on a full pipe and the host's memory stays flat.
"""

from __future__ import annotations

import asyncio


class BoundedCapture:
    """Keeps the first ``head`` and the last ``tail`` bytes written to a stream, and counts the rest."""

    def __init__(self, head: int = 8192, tail: int = 8192) -> None:
        self.head_limit = head
        self.tail_limit = tail
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            del self.tail[: max(0, len(self.tail) - self.tail_limit)]

    @property
    def retained(self) -> int:
        """Bytes held in memory (never more than head + tail)."""
        return len(self.head) + len(self.tail)

    @property
    def complete(self) -> bool:
        """True when nothing was dropped between head and tail."""
        return self.total == self.retained

    def text(self) -> str:
        """The decoded output; when bytes were dropped, head and tail are joined (the caller truncates)."""
        return (bytes(self.head) + bytes(self.tail)).decode("utf-8", errors="replace")

    async def drain(self, stream: asyncio.StreamReader) -> None:
        """Read ``stream`` to EOF, keeping only the bounded part."""
        while chunk := await stream.read(65536):
            self.feed(chunk)
