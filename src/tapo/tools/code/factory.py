"""Builds the ``code`` tool the config asks for: a local sandbox or a remote code server."""

from __future__ import annotations

from tapo.config.schema import CodeBackendConfig, RemoteCodeConfig
from tapo.tools.base import Tool


def build_code_tool(config: CodeBackendConfig) -> Tool:
    if isinstance(config, RemoteCodeConfig):
        from tapo.tools.code.client import RemoteCodeTool

        return RemoteCodeTool(config.url, timeout_s=config.timeout_s)
    from tapo.tools.code.tool import CodeTool

    return CodeTool(config)
