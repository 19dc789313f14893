from __future__ import annotations

import pytest

from tapo.config import load_config
from tapo.io.atomic import append_jsonl, atomic_open, read_jsonl, write_json, write_text
from tapo.io.runs import RunDir


def test_atomic_write_leaves_old_content_on_failure(tmp_path):
    target = tmp_path / "x.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write('{"a": 2, "half')
        raise RuntimeError("killed mid-write")
    assert target.read_text().strip().startswith('{\n  "a": 1')
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_append_jsonl(tmp_path):
    path = tmp_path / "m.jsonl"
    append_jsonl(path, [{"step": 1}])
    append_jsonl(path, [{"step": 2}, {"step": 3}])
    assert [r["step"] for r in read_jsonl(path)] == [1, 2, 3]


def test_run_dir_saves_resolved_config(tmp_path):
    config = load_config(None, [f"run.output_dir={tmp_path}", "run.name=r1", "trainer.lr=4e-6"])
    run = RunDir.create(config)
    assert run.root == tmp_path / "r1"
    assert "lr: 4.0e-06" in run.config_file.read_text()
    assert load_config(run.config_file).trainer.lr == 4e-6
    run.log_metrics({"step": 1})
    assert read_jsonl(run.metrics_file) == [{"step": 1}]


def test_atomic_files_get_the_permissions_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    write_text(tmp_path / "atomic.txt", "x")
    assert (tmp_path / "atomic.txt").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 != 0o600
