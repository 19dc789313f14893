"""``tapo index build`` / ``tapo index search`` through the real CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tapo.cli.main import app
from tapo.tools.search.bm25 import BM25Index

runner = CliRunner()


def write_corpus(path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_build_reports_bad_rows_by_line_and_indexes_the_rest(tmp_path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    write_corpus(
        corpus,
        [
            json.dumps({"id": "a", "title": "Eiffel Tower", "text": "Completed in 1889 in Paris."}),
            "{broken",
            json.dumps({"id": "b", "title": "Everest", "text": ""}),
            json.dumps({"id": "c", "title": "Amazon", "text": "The largest river by discharge."}),
        ],
    )
    result = runner.invoke(app, ["index", "build", str(corpus), "--out", str(tmp_path / "idx")])
    assert result.exit_code == 0, result.output
    assert "line 2" in result.output and "line 3" in result.output
    assert "2 passages" in result.output
    assert BM25Index.load(tmp_path / "idx").search("eiffel tower", 1)[0].id == "a"
    shown = runner.invoke(app, ["index", "search", str(tmp_path / "idx"), "largest river", "-k", "1"])
    assert shown.exit_code == 0 and "Amazon" in shown.output


def test_bad_invocations_exit_2_with_one_line(tmp_path) -> None:
    missing = runner.invoke(app, ["index", "build", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "i")])
    assert missing.exit_code == 2 and "not found" in missing.output
    corpus = tmp_path / "c.jsonl"
    write_corpus(corpus, ["{bad", "[]"])
    empty = runner.invoke(app, ["index", "build", str(corpus), "--out", str(tmp_path / "i")])
    assert empty.exit_code == 2 and "no passages" in empty.output
    assert not (tmp_path / "i").exists()
    kind = runner.invoke(app, ["index", "build", str(corpus), "--out", str(tmp_path / "i"), "--kind", "splade"])
    assert kind.exit_code == 2 and "--kind" in kind.output
    no_index = runner.invoke(app, ["index", "search", str(tmp_path), "query"])
    assert no_index.exit_code == 2 and "not a search index" in no_index.output
