"""Builds the ``code`` tool the config asks for: a local sandbox or a remote code server."""

from __future__ import annotations

from tapo.config.schema import CodeConfig
from tapo.tools.base import Tool


def build_code_tool(config: CodeConfig) -> Tool:
    if config.backend == "remote":
        if not config.url:
            raise ValueError("tools.code.backend=remote needs tools.code.url (e.g. http://127.0.0.1:8000)")
        from tapo.tools.code.client import RemoteCodeTool

        return RemoteCodeTool(config.url, timeout_s=config.timeout_s)
    from tapo.tools.code.tool import CodeTool

    return CodeTool(config)
