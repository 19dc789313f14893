"""``tapo data``: build, list and check through the real command line entry point."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tapo.cli.main import app

FIXTURES = Path(__file__).parents[1] / "fixtures" / "data" / "sources"
runner = CliRunner()


def test_build_mini_writes_the_files_with_config_defaults_and_flags(tmp_path):
    config = tmp_path / "data.yaml"
    config.write_text("data:\n  mini_seed: 9\n  mini_validation: 6\n")
    out = tmp_path / "mini"
    result = runner.invoke(
        app,
        ["data", "build", "mini", "--out", str(out), "--train", "30", "--test", "8", "--no-index", "-c", str(config)],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 9
    assert manifest["sizes"] == {"train": 30, "validation": 6, "test": 8}
    assert (out / "corpus.jsonl").exists() and not (out / "index").exists()


def test_build_from_local_copies_and_clear_failures(tmp_path):
    result = runner.invoke(
        app, ["data", "build", "tapo-hard", "--out", str(tmp_path / "h"), "--source-dir", str(FIXTURES), "--size", "30"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "h" / "train.parquet").exists()
    result = runner.invoke(
        app, ["data", "build", "tapo-easy", "--out", str(tmp_path / "e"), "--source-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "nq_open/train.jsonl (or .json/.parquet) not found" in result.output
    result = runner.invoke(app, ["data", "build", "tapo-medium", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "unknown dataset 'tapo-medium'" in result.output
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("data:\n  mini_train: -3\n")
    result = runner.invoke(app, ["data", "build", "mini", "--out", str(tmp_path / "x"), "-c", str(bad_config)])
    assert result.exit_code == 2 and not (tmp_path / "x").exists()


def test_list_shows_builders_and_benchmarks():
    result = runner.invoke(app, ["data", "list"], terminal_width=200)
    assert result.exit_code == 0
    for name in ("mini", "tapo-easy", "tapo-hard", "bamboogle", "2wikimultihopqa", "math500", "aime24"):
        assert name in result.output


def test_check_reports_repairs_and_fails_on_dropped_rows(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"id": "a", "question": "q", "data_source": "x", "golds": "g"}) + "\n{oops\n")
    result = runner.invoke(app, ["data", "check", str(path)], terminal_width=200)
    assert result.exit_code == 1
    assert "line 2: invalid JSON" in result.output and "1 repaired, 1 dropped" in result.output
    result = runner.invoke(app, ["data", "check", str(path), "--strict"], terminal_width=200)
    assert result.exit_code == 1 and "line 1: repaired: golds not a list" in result.output


def test_build_mini_into_an_unwritable_place_is_one_line(tmp_path):
    """Issue 28: `tapo data build mini --out` a read-only directory was a traceback after the generation."""
    import os

    (tmp_path / "a-file").write_text("")
    result = runner.invoke(app, ["data", "build", "mini", "--out", str(tmp_path / "a-file" / "mini"), "--train", "1"])
    assert result.exit_code == 2 and "is not a directory" in result.output and "Traceback" not in result.output
    if os.geteuid() != 0:  # root writes into a read-only directory anyway
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        result = runner.invoke(app, ["data", "build", "mini", "--out", str(locked / "mini"), "--train", "1"])
        assert result.exit_code == 2 and "is not writable" in result.output
