"""Model-facing text of a code run (docs/method.md §2), the bounded capture, the fallback without isolation."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tapo.config.schema import SandboxCodeConfig
from tapo.tools.code.capture import BoundedCapture
from tapo.tools.code.output import EMPTY_OUTPUT, format_output, truncate
from tapo.tools.code.sandbox import PythonSandbox, SandboxUnavailableError
from tapo.tools.code.tool import CodeTool


@given(st.text(max_size=5000))
def test_truncate_keeps_head_and_tail_and_is_idempotent(text):
    out = truncate(text)
    assert truncate(out) == out
    if len(text) <= 2000:
        assert out == text
    else:
        assert out == text[:1000] + "\n...\n" + text[-1000:]


@given(st.lists(st.binary(max_size=3000), max_size=30))
def test_bounded_capture_keeps_exact_head_and_tail(chunks):
    capture = BoundedCapture(head=100, tail=200)
    for chunk in chunks:
        capture.feed(chunk)
    data = b"".join(chunks)
    assert capture.total == len(data) and capture.retained <= 300
    assert bytes(capture.head) == data[:100]
    assert bytes(capture.tail) == data[100:][-200:] if len(data) > 100 else not capture.tail
    assert capture.complete == (len(data) <= 300)


def test_format_output_cases():
    assert format_output("") == EMPTY_OUTPUT
    assert format_output("42\n") == "42"
    assert "ZeroDivisionError" in format_output("partial\n", "ZeroDivisionError: division by zero", 1)
    assert format_output("", "", 137).startswith("[The process was killed by SIGKILL")
    assert "timed out after 2 s" in format_output("", timed_out=True, timeout_s=2.0)
    killed = format_output("partial", "", 137, memory_exceeded_mb=256)
    assert killed.startswith("partial\n") and "memory limit of 256 MB" in killed


def test_code_tool_round_trip_and_error_text():
    tool = CodeTool(SandboxCodeConfig(timeout_s=10))
    ok = asyncio.run(tool.call("print(sum(range(10)))"))
    assert ok.ok and ok.text == "45" and ok.metadata["exit_code"] == 0
    silent = asyncio.run(tool.call("x = 1"))
    assert silent.ok and silent.text == EMPTY_OUTPUT
    bad = asyncio.run(tool.call("print('before')\nraise ValueError('boom')"))
    assert not bad.ok and bad.error == "exit status 1"
    assert bad.text.startswith("before\n") and bad.text.endswith("ValueError: boom")
    big = asyncio.run(tool.call("print('a' * 5000)"))
    assert len(big.text) == 2005 and "\n...\n" in big.text


def test_fallback_without_bwrap_warns_once_and_still_runs(caplog, tmp_path):
    broken = tmp_path / "bwrap"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    with caplog.at_level(logging.WARNING):
        box = PythonSandbox(SandboxCodeConfig(timeout_s=10, require_isolation=False), bwrap=str(broken))
        PythonSandbox(SandboxCodeConfig(timeout_s=10, require_isolation=False), bwrap=str(broken))
    assert not box.isolated
    assert sum("NOT ISOLATED" in r.getMessage() for r in caplog.records) == 1
    result = asyncio.run(box.run("import os; print(os.getcwd().startswith('/tmp') or os.getcwd())"))
    assert result.exit_code == 0 and not result.isolated


def test_require_isolation_refuses_without_bwrap(tmp_path):
    broken = tmp_path / "bwrap"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(SandboxUnavailableError, match=r"tools\.code\.require_isolation=false"):
        PythonSandbox(SandboxCodeConfig(), bwrap=str(broken))  # on by default
