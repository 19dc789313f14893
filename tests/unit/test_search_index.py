"""BM25 index and corpus storage on a corpus the tests generate: ranking, persistence, bad rows, atomic rebuilds."""

from __future__ import annotations

import json
import threading

import pytest

from tapo.tools.search.bm25 import BM25Index
from tapo.tools.search.corpus import CorpusError, read_corpus_jsonl, validate_row

FACTS = [
    ("Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889."),
    ("Mount Everest", "Mount Everest is Earth's highest mountain above sea level, in the Himalayas."),
    ("Python (language)", "Python is a high-level programming language created by Guido van Rossum."),
    ("Amazon River", "The Amazon River in South America is the largest river by discharge volume of water."),
    ("Marie Curie", "Marie Curie was a physicist and chemist who conducted pioneering research on radioactivity."),
    ("Photosynthesis", "Photosynthesis is the process plants use to convert light energy into chemical energy."),
]
QUERIES = {
    "when was the eiffel tower completed": "0",
    "highest mountain on earth": "1",
    "who created the python programming language": "2",
    "largest river by discharge": "3",
    "pioneer of radioactivity research": "4",
    "how do plants convert light into energy": "5",
}


def corpus_rows(filler: int = 200) -> list[dict]:
    """The facts plus filler passages over a shared vocabulary, so ranking has to beat real competition."""
    rows = [{"id": str(i), "title": title, "text": text} for i, (title, text) in enumerate(FACTS)]
    words = [
        "city",
        "river",
        "tower",
        "language",
        "research",
        "energy",
        "water",
        "mountain",
        "history",
        "science",
        "art",
        "music",
    ]
    for i in range(filler):
        text = " ".join(words[(i * 7 + j) % len(words)] for j in range(12))
        rows.append({"id": f"f{i}", "title": f"Filler {i}", "text": text})
    return rows


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> BM25Index:
    return BM25Index.build(corpus_rows(), tmp_path_factory.mktemp("bm25") / "index")


@pytest.mark.parametrize(("query", "expected"), sorted(QUERIES.items()))
def test_known_queries_rank_the_right_passage_first(index: BM25Index, query: str, expected: str) -> None:
    hits = index.search(query, 3)
    assert hits[0].id == expected
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_search_many_matches_search_and_handles_unknown_words(index: BM25Index) -> None:
    queries = list(QUERIES)
    assert [[p.id for p in r] for r in index.search_many(queries, 2)] == [
        [p.id for p in index.search(q, 2)] for q in queries
    ]
    assert index.search("zzyzx qwerty", 3) == []
    assert index.search("the of and", 3) == []  # stop words only
    assert len(index.search("river", 1000)) <= len(index)
    with pytest.raises(ValueError, match="k must be"):
        index.search("river", 0)


def test_reload_and_mmap_give_the_same_results(index: BM25Index) -> None:
    for mmap in (False, True):
        again = BM25Index.load(index.index_dir, mmap=mmap)
        assert again.mmap is mmap
        assert [(p.id, p.score) for p in again.search("mountain highest", 3)] == [
            (p.id, p.score) for p in index.search("mountain highest", 3)
        ]
    assert BM25Index.load(index.index_dir).mmap is False  # small: loaded into memory


def test_concurrent_searches_agree(index: BM25Index) -> None:
    expected = {q: index.search(q, 3) for q in QUERIES}
    failures: list[str] = []

    def worker() -> None:
        for query, hits in expected.items():
            if index.search(query, 3) != hits:
                failures.append(query)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_passage_contents_is_search_r1_format(index: BM25Index) -> None:
    hit = index.search("eiffel tower", 1)[0]
    assert hit.contents == f'"{hit.title}"\n{hit.text}'


def test_bad_row_aborts_the_build_and_keeps_the_old_index(tmp_path) -> None:
    out = tmp_path / "index"
    BM25Index.build(corpus_rows(5), out)
    before = (out / "meta.json").read_text()
    with pytest.raises(CorpusError, match="line 3"):
        BM25Index.build([{"id": 1, "text": "ok"}, {"id": 2, "text": "ok"}, {"id": 3, "text": ""}], out)
    assert (out / "meta.json").read_text() == before
    assert BM25Index.load(out).search("eiffel", 1)[0].id == "0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]  # no staging directory left behind


def test_rebuild_replaces_the_index_with_a_new_build_id(tmp_path) -> None:
    out = tmp_path / "index"
    first = BM25Index.build(corpus_rows(0), out)
    second = BM25Index.build([{"id": "x", "title": "Zebra", "text": "zebras are striped"}], out)
    assert second.meta["build_id"] != first.meta["build_id"]
    assert [p.id for p in second.search("striped zebra", 3)] == ["x"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


def test_refuses_to_overwrite_a_directory_that_is_no_index(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        BM25Index.build(corpus_rows(0), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_empty_corpus_and_missing_index_are_clear_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="no passages"):
        BM25Index.build([], tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="tapo index build"):
        BM25Index.load(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([1, 2], "JSON object"),
        ({"title": "t", "text": "x"}, "'id'"),
        ({"id": True, "text": "x"}, "'id'"),
        ({"id": 1, "title": 5, "text": "x"}, "'title'"),
        ({"id": 1, "text": "   "}, "'text'"),
    ],
)
def test_validate_row_rejects_bad_rows(row, message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        validate_row(row, 7)


def test_read_corpus_jsonl_collects_bad_lines(tmp_path) -> None:
    path = tmp_path / "corpus.jsonl"
    lines = [
        json.dumps({"id": 1, "text": "good"}),
        "{not json",
        "",
        json.dumps({"id": 2}),
        json.dumps({"id": 3, "text": "ok"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    errors: list[CorpusError] = []
    rows = list(read_corpus_jsonl(path, errors))
    assert [r["id"] for r in rows] == ["1", "3"]
    assert [e.line for e in errors] == [2, 4]
    with pytest.raises(CorpusError, match="line 2: invalid JSON"):
        list(read_corpus_jsonl(path))
