"""oneDNN keeps a kernel per bf16 matmul shape; tapo caps its caches (tapo.io.onednn)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tapo.io.onednn import CACHE_SETTINGS, bound_onednn_caches

# 150 bf16 matmuls, forward and backward, of random row counts (as sampling and training batches vary), with the
# allocator as tapo sets it: prints the MiB left resident.
NEW_SHAPES = """
import random, sys, psutil, torch
from tapo.io.allocator import fix_mmap_threshold
from tapo.io.onednn import bound_onednn_caches
fix_mmap_threshold()
if sys.argv[1] == "bounded":
    bound_onednn_caches()
torch.set_num_threads(1)
weight = torch.randn(1536, 576, dtype=torch.bfloat16, requires_grad=True)
before = psutil.Process().memory_info().rss
random.seed(0)
for _ in range(150):
    rows = torch.randn(random.randint(1, 1500), 576, dtype=torch.bfloat16, requires_grad=True)
    torch.nn.functional.linear(rows, weight).sum().backward()
print((psutil.Process().memory_info().rss - before) / 2**20)
"""


def _unset_env() -> dict[str, str]:
    """This environment without either setting: a child process starts with oneDNN's defaults."""
    return {k: v for k, v in os.environ.items() if k not in CACHE_SETTINGS}


def _grown_mib(mode: str) -> float:
    command = [sys.executable, "-c", NEW_SHAPES, mode]
    return float(subprocess.run(command, capture_output=True, text=True, check=True, env=_unset_env()).stdout)


def test_bounded_caches_stop_the_growth_with_each_new_bf16_shape() -> None:
    unbounded = _grown_mib("default")
    if unbounded < 250:
        pytest.skip(f"this CPU's bf16 matmuls grew {unbounded:.0f} MiB over 150 shapes: not oneDNN's cached kernels")
    assert _grown_mib("bounded") < unbounded / 2


def test_the_environment_wins(monkeypatch) -> None:
    monkeypatch.setenv(CACHE_SETTINGS[0], "7")
    monkeypatch.delenv(CACHE_SETTINGS[1], raising=False)
    bound_onednn_caches()
    assert os.environ[CACHE_SETTINGS[0]] == "7"
    assert os.environ[CACHE_SETTINGS[1]] == "64"


def test_every_tapo_command_bounds_them_before_its_work() -> None:
    # the CLI's callback runs before any subcommand; its help is enough to reach it
    script = (
        "import os, tapo.cli.main as m\n"
        "try:\n    m.app(['config', 'show', '--help'])\nexcept SystemExit:\n    pass\n"
        f"print([os.environ.get(name) for name in {CACHE_SETTINGS!r}])\n"
    )
    command = [sys.executable, "-c", script]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=_unset_env()).stdout
    assert out.strip().splitlines()[-1] == "['64', '64']"
