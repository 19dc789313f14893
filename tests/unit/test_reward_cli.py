"""``tapo reward score``: table, --out JSONL, malformed rows reported by line while the others are scored."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tapo.cli.main import app
from tapo.io.atomic import read_jsonl

runner = CliRunner()

ROWS = [
    json.dumps({"response": "<think>x</think><answer>Paris</answer>", "golds": ["Paris"], "data_source": "nq"}),
    json.dumps({"response": "<answer>Paris", "golds": ["Paris"], "data_source": "nq", "n_model_tokens": 2048}),
    "not json",
    json.dumps({"response": "<answer>1</answer>", "golds": [], "data_source": "nq"}),
    json.dumps({"response": "<answer>1</answer>", "golds": ["1"], "data_source": "squad"}),
    "",
    json.dumps({"response": "<answer>1,234 m</answer>", "golds": ["1234"], "data_source": "calculator", "id": "x"}),
    json.dumps({"response": 3, "golds": ["1"], "data_source": "nq"}),
]


def test_score_file(tmp_path):
    source, out = tmp_path / "rows.jsonl", tmp_path / "out" / "scored.jsonl"
    source.write_text("\n".join(ROWS) + "\n")
    result = runner.invoke(app, ["reward", "score", str(source), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "summary by data source" in result.stdout
    for line, message in [(3, "not JSON"), (4, "golds"), (5, "no scorer for data_source 'squad'"), (8, "response")]:
        assert f"line {line}:" in result.output and message in result.output
    assert "4 malformed row(s), 3 scored" in result.output
    rows = {row["line"]: row for row in read_jsonl(out)}
    assert sorted(rows) == [1, 2, 3, 4, 5, 7, 8]
    assert (rows[1]["total"], rows[1]["acc"], rows[1]["scorer"]) == (1.0, True, "em")
    assert (rows[2]["format_ok"], rows[2]["total"]) == (False, -2.0)
    assert rows[7]["score"] == 1.0 and rows[7]["scorer"] == "calculator"
    assert "error" in rows[3]


def test_score_with_overrides_and_clean_exit(tmp_path):
    source = tmp_path / "rows.jsonl"
    source.write_text(json.dumps({"response": "<answer>Parus</answer>", "golds": ["Paris"], "data_source": "nq"}))
    result = runner.invoke(app, ["reward", "score", str(source), "reward.custom_scorers={nq: nq}"])
    assert result.exit_code == 0, result.output
    assert "0.800" in result.stdout


def test_bad_input_exits_2(tmp_path):
    assert runner.invoke(app, ["reward", "score", str(tmp_path / "missing.jsonl")]).exit_code == 2
    source = tmp_path / "rows.jsonl"
    source.write_text("{}\n")
    result = runner.invoke(app, ["reward", "score", str(source), "reward.overlong.buffer=0"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["reward", "score", str(source), "reward.custom_scorers={x: nomodule:f}"])
    assert result.exit_code == 2 and "cannot load custom scorer" in result.output
