"""Shared fixtures: the stored SmolLM2 checkpoint (pulled by `make test`), its tokenizer, tiny models."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

torch.set_num_threads(max(1, min(2, len(os.sched_getaffinity(0)))))


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    from tapo.models.resolve import resolve_model

    return resolve_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tokenizer(smollm2_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_path)


@pytest.fixture
def tiny_model(tokenizer):
    from tapo.models.tiny import build_tiny_model

    return build_tiny_model(tokenizer).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, smollm2_path: str) -> str:
    from tapo.models.tiny import save_tiny_checkpoint

    return str(save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from a second thread, and on a loaded machine they are ~10x slower with two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The headless Chromium that the report-rendering tests drive; without it they skip with the reason and the
    fix (`make test` installs it when run as root, through `make browser`)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(
            "needs headless Chromium (Debian package `chromium`), which is not on PATH: "
            "`make browser` (root) or `sudo apt-get install chromium`"
        )
    return found
