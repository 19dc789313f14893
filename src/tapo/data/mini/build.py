"""Generate TAPO-mini from a seed and write it: corpus, three splits, a manifest with hashes, and the search index.

Everything comes from one ``random.Random(seed)`` consumed in a fixed order, with no set or hash ordering involved,
so the same seed gives byte-identical files on any machine and Python process.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tapo.config.schema import MINI_SIZES
from tapo.data.io import save_examples
from tapo.data.mini.questions import ABILITY, COMMON_KNOWLEDGE, Draft, QuestionMaker, kind_counts
from tapo.data.mini.world import Entity, WorldBuilder, WorldSizes
from tapo.data.schema import Example
from tapo.io.atomic import write_json, write_jsonl

SPLITS = ("train", "validation", "test")
DATA_SOURCE = "tapo_mini"
MAX_ATTEMPTS = 200
"""Draws per question before giving up on finding one not asked before (only a tiny world runs out)."""


@dataclass(frozen=True)
class MiniSizes:
    """Questions per split."""

    train: int = MINI_SIZES["train"]
    validation: int = MINI_SIZES["validation"]
    test: int = MINI_SIZES["test"]

    def __post_init__(self) -> None:
        for split, count in asdict(self).items():
            if count < 0:
                raise ValueError(f"{split} size must be at least 0, got {count}")


@dataclass
class MiniDataset:
    """A generated TAPO-mini: every entity (the corpus) and the questions of each split."""

    seed: int
    entities: list[Entity]
    splits: dict[str, list[Example]] = field(default_factory=dict)

    def corpus(self) -> list[dict[str, str]]:
        return [entity.passage() for entity in self.entities]

    def entity(self, name: str) -> Entity:
        return next(entity for entity in self.entities if entity.name == name)


def _common_knowledge_by_split() -> dict[str, list[int]]:
    """Disjoint common-knowledge facts per split, so no no-tool question of the test split is seen in training."""
    indices = range(len(COMMON_KNOWLEDGE))
    return {
        "validation": [i for i in indices if i % 10 == 0],
        "test": [i for i in indices if i % 10 in (1, 2)],
        "train": [i for i in indices if i % 10 > 2],
    }


def _unique(make: Callable[[], Draft], seen: set[str], kind: str, split: str) -> Draft:
    for _ in range(MAX_ATTEMPTS):
        draft = make()
        if draft.question not in seen:
            seen.add(draft.question)
            return draft
    raise ValueError(f"could not draw a new {kind} question for the {split} split after {MAX_ATTEMPTS} attempts")


def generate_mini(seed: int = 0, sizes: MiniSizes | None = None) -> MiniDataset:
    """Build the world and the questions in memory (no files): about a second for the default sizes."""
    sizes = sizes or MiniSizes()
    rng = random.Random(seed)
    builder = WorldBuilder(rng)
    common = _common_knowledge_by_split()
    seen: set[str] = set()  # question texts of every split: no question appears twice, or in two splits
    dataset = MiniDataset(seed=seed, entities=builder.entities)
    for split in SPLITS:
        total = getattr(sizes, split)
        maker = QuestionMaker(rng, builder.sub_world(split, WorldSizes.for_questions(total)), common[split])
        kinds = [kind for kind, count in kind_counts(total).items() for _ in range(count)]
        rng.shuffle(kinds)
        rows = []
        for number, kind in enumerate(kinds):
            draft = _unique(maker.makers[kind], seen, kind, split)
            rows.append(
                Example(
                    id=f"{DATA_SOURCE}-{split}-{number:05d}",
                    question=draft.question,
                    data_source=DATA_SOURCE,
                    ability=ABILITY[kind],
                    golds=draft.golds,
                    split=split,
                    meta=draft.meta(),
                )
            )
        dataset.splits[split] = rows
    return dataset


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(dataset: MiniDataset, sizes: MiniSizes, files: list[Path]) -> dict[str, Any]:
    """Seed, sizes, counts by split / kind / level, entities per split and the sha256 of each written file."""
    counts: dict[str, Any] = {}
    for split, rows in dataset.splits.items():
        counts[split] = {
            "total": len(rows),
            "kind": dict(sorted(Counter(row.meta["kind"] for row in rows).items())),
            "level": dict(sorted(Counter(row.meta["level"] for row in rows).items())),
            "entities": sum(entity.split == split for entity in dataset.entities),
        }
    return {
        "name": DATA_SOURCE,
        "seed": dataset.seed,
        "sizes": asdict(sizes),
        "passages": len(dataset.entities),
        "counts": counts,
        "sha256": {path.name: _sha256(path) for path in files},
    }


def build_mini(
    out_dir: str | Path, seed: int = 0, sizes: MiniSizes | None = None, index: bool = True
) -> dict[str, Any]:
    """Write corpus.jsonl, train/validation/test.jsonl and manifest.json into ``out_dir``; index the corpus for
    search into ``out_dir/index`` (BM25) unless ``index`` is False. Returns the manifest."""
    sizes = sizes or MiniSizes()
    out = Path(out_dir)
    dataset = generate_mini(seed, sizes)
    files = [out / "corpus.jsonl"]
    write_jsonl(files[0], dataset.corpus())
    for split in SPLITS:
        files.append(save_examples(dataset.splits[split], out / f"{split}.jsonl"))
    result = manifest(dataset, sizes, files)
    write_json(out / "manifest.json", result)
    if index:
        from tapo.tools.search.bm25 import BM25Index

        BM25Index.build(dataset.corpus(), out / "index")
    return result
