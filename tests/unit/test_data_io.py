"""Loading and saving Example rows: round trips, repairs, drops, strict mode, and errors that say where."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapo.data.io import DataError, load_examples, read_examples, save_examples
from tapo.data.schema import Example


def _write_lines(path, rows) -> None:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))


GOOD = {"id": "a", "question": "q?", "data_source": "nq", "golds": ["x"], "split": "test", "meta": {"k": [1, 2]}}


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_round_trip_keeps_every_field(tmp_path, suffix):
    rows = [
        Example(**GOOD),
        Example(id="b", question="2+3?", data_source="calculator", golds=["5", "5.0"], meta={}),
        Example(id="c", question="?", data_source="x", golds=["y"], meta={"plan": [{"tool": "code"}], "n": None}),
    ]
    path = save_examples(rows, tmp_path / f"rows{suffix}")
    loaded, report = read_examples(path)
    assert loaded == rows
    assert (report.read, report.loaded, report.repaired, report.dropped) == (3, 3, 0, 0)


def test_unambiguous_deviations_are_repaired_and_counted(tmp_path):
    path = tmp_path / "messy.jsonl"
    _write_lines(
        path,
        [
            {**GOOD, "id": "s", "golds": "Paris"},
            {**GOOD, "id": "n", "golds": 42},
            {**GOOD, "id": "f", "golds": [3.0, 2.5, "x"]},
            {**GOOD, "id": 7},
            {key: value for key, value in GOOD.items() if key != "id"},
        ],
    )
    rows, report = read_examples(path)
    assert [row.golds for row in rows] == [["Paris"], ["42"], ["3", "2.5", "x"], ["x"], ["x"]]
    assert [row.id for row in rows] == ["s", "n", "f", "7", "messy-5"]
    assert (report.repaired, report.dropped, report.loaded) == (5, 0, 5)
    assert report.reasons["golds not a list"] == 2
    assert any("messy.jsonl, line 5: repaired: id missing" in problem for problem in report.problems)
    assert "5 repaired" in report.summary()


def test_bad_rows_are_dropped_with_file_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    _write_lines(
        path,
        [
            GOOD,
            "{not json",
            {**GOOD, "id": "b", "golds": []},
            {**GOOD, "id": "c", "question": ""},
            {**GOOD, "id": "d", "colour": "red"},
            [1, 2],
            {**GOOD},  # duplicate of line 1
            {**GOOD, "id": "e", "golds": [{"text": "x"}]},
        ],
    )
    rows, report = read_examples(path)
    assert [row.id for row in rows] == ["a"]
    assert (report.read, report.dropped) == (8, 7)
    messages = "\n".join(report.problems)
    assert "bad.jsonl, line 2: invalid JSON" in messages
    assert "line 3: field 'golds'" in messages
    assert "line 4: field 'question'" in messages
    assert "line 5: field 'colour'" in messages
    assert "line 6: expected an object, got list" in messages
    assert "line 7: duplicate id 'a' (first at line 1)" in messages
    assert "line 8: field 'golds.0'" in messages


def test_strict_mode_raises_on_the_first_problem(tmp_path):
    path = tmp_path / "strict.jsonl"
    _write_lines(path, [GOOD, {**GOOD, "id": "b", "golds": []}])
    with pytest.raises(DataError, match=r"strict\.jsonl, line 2: field 'golds'"):
        load_examples(path, strict=True)
    _write_lines(path, [{**GOOD, "golds": "x"}])
    with pytest.raises(DataError, match="repaired: golds not a list"):
        load_examples(path, strict=True)


def test_parquet_rows_are_numbered_as_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "hub.parquet"
    pq.write_table(pa.Table.from_pylist([GOOD, {**GOOD, "id": "b", "question": None}]), path)
    with pytest.raises(DataError, match=r"hub\.parquet, row 2: field 'question'"):
        load_examples(path, strict=True)
    rows, report = read_examples(path)
    assert [row.meta for row in rows] == [{"k": [1, 2]}]  # a struct meta column reads back as a dict
    assert report.dropped == 1


def test_split_keeps_matching_rows_and_fills_a_missing_split(tmp_path):
    path = tmp_path / "splits.jsonl"
    no_split = {key: value for key, value in GOOD.items() if key != "split"}
    _write_lines(path, [GOOD, {**GOOD, "id": "t", "split": "train"}, {**no_split, "id": "n"}])
    rows, report = read_examples(path, split="test")
    assert [row.id for row in rows] == ["a", "n"]
    assert rows[1].split == "test"
    assert (report.other_split, report.repaired) == (1, 1)
    assert [row.id for row in load_examples(path)] == ["a", "t", "n"]


def test_a_non_utf8_byte_drops_its_line_and_names_it(tmp_path):
    """Issue 16 item 7: one non-UTF-8 byte failed the whole file with a bare UnicodeDecodeError."""
    path = tmp_path / "latin1.jsonl"
    good = [json.dumps({**GOOD, "id": i}).encode() + b"\n" for i in "abc"]
    latin1 = '{"id": "x", "question": "caf\u00e9?"}\n'.encode("latin-1")
    path.write_bytes(good[0] + latin1 + good[1] + b"\xff\n" + good[2])
    rows, report = read_examples(path)
    assert [row.id for row in rows] == ["a", "b", "c"]
    assert report.problems == [
        f"{path}, line 2: not UTF-8 (byte 0xe9 at offset 28)",
        f"{path}, line 4: not UTF-8 (byte 0xff at offset 0)",
    ]
    with pytest.raises(DataError, match=r"latin1\.jsonl, line 2: not UTF-8 \(byte 0xe9"):
        load_examples(path, strict=True)


def test_file_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match="no such dataset file"):
        load_examples(tmp_path / "missing.jsonl")
    (tmp_path / "split.jsonl").mkdir()
    with pytest.raises(DataError, match=r"split\.jsonl: a directory, not a dataset file \(expected \.jsonl"):
        load_examples(tmp_path / "split.jsonl")
    (tmp_path / "rows.csv").write_text("id,question\n")
    with pytest.raises(DataError, match=r"unknown dataset format '\.csv'"):
        load_examples(tmp_path / "rows.csv")
    with pytest.raises(ValueError, match="golds"):
        save_examples([{**GOOD, "golds": []}], tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
_meta = st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers())))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.builds(Example, id=_text, question=_text, data_source=_text, golds=st.lists(_text, min_size=1), meta=_meta),
        max_size=5,
        unique_by=lambda row: row.id,
    ),
    suffix=st.sampled_from([".jsonl", ".parquet"]),
)
def test_any_rows_survive_a_round_trip(tmp_path, rows, suffix):
    path = save_examples(rows, tmp_path / f"any{suffix}")
    assert load_examples(path, strict=True) == rows


def test_a_report_keeps_a_bounded_number_of_problem_lines_but_exact_counts(tmp_path, monkeypatch):
    import tapo.data.io as data_io

    monkeypatch.setattr(data_io, "MAX_PROBLEM_LINES", 3)
    path = tmp_path / "many.jsonl"
    _write_lines(path, [{**GOOD, "id": f"r{i}", "golds": "g"} for i in range(10)])
    rows, report = read_examples(path)
    assert len(rows) == 10 and report.repaired == 10 and report.reasons["golds not a list"] == 10
    assert len(report.problems) == 3


def test_a_dropped_row_is_logged_with_its_line_number(tmp_path, caplog):
    """Issue 28: the warning counted a dropped non-JSON row without saying which line it was."""
    path = tmp_path / "rows.jsonl"
    good = '{"id": "a", "question": "q?", "data_source": "nq", "golds": ["x"]}'
    path.write_text(f"{good}\n{{not json\n")
    with caplog.at_level("WARNING", logger="tapo.data.io"):
        assert [row.id for row in load_examples(path)] == ["a"]
    (message,) = [record.getMessage() for record in caplog.records]
    assert "1 dropped" in message and f"first dropped: {path}, line 2: invalid JSON" in message and "\n" not in message
