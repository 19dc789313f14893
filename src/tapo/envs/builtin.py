"""TAPO's two datasets as environments, built as a user's is: ``env.name=tapo-mini`` and ``env.name=tapo-published``.

Each builds its files once (what ``tapo data build mini`` / ``tapo data build tapo`` write) into its own directory
under ``$TAPO_HOME/envs`` and reads its splits from there; TAPO's prompt, its ``search`` and ``code``, and the
reward registry's scorers for their data sources. Without ``env.name`` nothing here runs: the config alone, as
before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from tapo.config.schema import MINI_SIZES, RewardConfig
from tapo.data.io import load_examples
from tapo.data.schema import Example
from tapo.envs.bundle import Environment
from tapo.paths import tapo_home

TAPO_TOOLS = ("search", "code")


def _cached(root: Path, build: Callable[[Path], object], suffix: str, last: str) -> Callable[[str], list[Example]]:
    """Rows of a split read from ``root/<split><suffix>``, once ``build(root)`` has written them (``last`` is what
    it writes last: a build cut short is built again)."""

    def rows(split: str) -> list[Example]:
        if not (root / last).exists():
            build(root)
        return load_examples(root / f"{split}{suffix}")

    return rows


def tapo_mini(
    seed: int = 0,
    train: int = MINI_SIZES["train"],
    validation: int = MINI_SIZES["validation"],
    test: int = MINI_SIZES["test"],
) -> Environment:
    """TAPO-mini: the offline fictional world, its questions and its BM25 index, from a seed and the split sizes."""
    from tapo.data.mini import MiniSizes, build_mini

    sizes = MiniSizes(train, validation, test)
    root = tapo_home() / "envs" / "tapo-mini" / f"seed{seed}-{train}-{validation}-{test}"
    return Environment(
        name="tapo-mini",
        dataset=_cached(root, lambda out: build_mini(out, seed, sizes), ".jsonl", "index"),
        template="base",
        tools=TAPO_TOOLS,
        config={"tools": {"search": {"backend": {"kind": "bm25", "index_dir": str(root / "index")}}}},
    )


def tapo_published(location: str = "hf:Goer17/TAPO") -> Environment:
    """TAPO's published train/test data (the hub, or a directory holding its parquet files), scored as TAPO's code
    scored each source (``reward.preset: tapo``)."""
    from tapo.data.published import build_published
    from tapo.rewards.registry import ScorerRegistry

    key = hashlib.sha256(str(location).encode()).hexdigest()[:12]
    root = tapo_home() / "envs" / "tapo-published" / key

    def build(out: Path) -> None:
        registry = ScorerRegistry(RewardConfig(preset="tapo"))
        try:
            build_published(location, out, registry.name_for)
        finally:
            registry.close()

    return Environment(
        name="tapo-published",
        dataset=_cached(root, build, ".parquet", "manifest.json"),
        template="base",
        tools=TAPO_TOOLS,
        config={"reward": {"preset": "tapo"}},
        splits=("train", "validation"),
    )
