"""A base for objects that own resources (tools, an event loop, an engine's processes) and end them in ``close``."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closing:
    """``with obj:`` closes ``obj`` at the end of the block, on an error too; subclasses define :meth:`close`."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
