"""The benchmark harness (benchmarks/harness.py, benchmarks/figures.py): rotation, statistics, workers, docs section."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psutil
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import figures  # noqa: E402
import harness  # noqa: E402
import recording  # noqa: E402


def test_rotation_lets_every_variant_lead_once_per_cycle():
    names = ["a", "b", "c"]
    orders = [harness.rotated(names, r) for r in range(3)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    assert harness.rotated(names, 3) == names
    assert harness.rotated([], 2) == []


def test_spread_and_per_round_ratios():
    assert harness.Spread.of([3.0, 1.0, 2.0]) == harness.Spread(2.0, 1.0, 3.0)
    assert harness.Spread.of([1.0, 2.0]).format(1) == "1.5 [1.0–2.0]"
    with pytest.raises(ValueError):
        harness.Spread.of([])
    rounds = [{"a": {"t": 10.0}, "b": {"t": 5.0}}, {"a": {"t": 20.0}, "b": {"t": 20.0}}, {"b": {"t": 1.0}}]
    # Per round, not a ratio of medians: round 3 has no baseline and is left out.
    assert harness.round_ratios(rounds, "b", "a", "t") == [0.5, 1.0]


def test_interleave_rotates_records_and_skips_a_failing_variant():
    calls: list[tuple[str, int]] = []

    def measure(variant: str, round_index: int) -> harness.Sample:
        calls.append((variant, round_index))
        if variant == "broken" and round_index == 1:
            raise RuntimeError("engine died")
        return {"tok_s": {"base": 10.0, "fast": 20.0, "broken": 5.0}[variant] + round_index}

    figure = harness.Figure("t", "tok_s", "tok/s", "base", ["base", "fast", "broken"], skipped={})
    harness.interleave(figure, measure, rounds=3)
    assert figure.orders[0] == ["base", "fast", "broken"]
    assert figure.orders[1] == ["fast", "broken", "base"]
    assert "broken" not in figure.orders[2]  # not retried after it failed
    assert ("broken", 2) not in calls
    assert "engine died" in figure.skipped["broken"]
    assert harness.round_ratios(figure.rounds, "fast", "base", "tok_s") == [2.0, 21 / 11, 22 / 12]
    assert figure.before["loadavg"] and "torch_threads" in figure.after


def test_warnings_name_load_busy_processes_and_leftover_engines():
    state = {
        "loadavg": [50.0, 1.0, 1.0],
        "busy": [{"pid": 7, "name": "python", "cpu_percent": 95.0, "command": "python train.py"}],
        "engine_leftovers": [{"pid": 8, "name": "VLLM::EngineCore", "rss_mb": 3600, "command": ""}],
    }
    lines = harness.warnings_of(state, "before")
    assert len(lines) == 3
    assert "load average 50.00" in lines[0] and "python 95 %" in lines[1] and "pid 8" in lines[2]
    assert harness.warnings_of({"loadavg": [0.0, 0, 0], "busy": [], "engine_leftovers": []}, "x") == []


WORKER = """
import sys
sys.path.insert(0, {path!r})
import harness
print("library noise on stdout")

def handle(message):
    if message["x"] < 0:
        raise ValueError("negative")
    return {{"y": 2 * message["x"]}}

harness.serve(handle)
"""


def test_worker_round_trip_survives_stdout_noise_and_errors(tmp_path):
    code = WORKER.format(path=str(BENCHMARKS))
    with harness.Worker([sys.executable, "-c", code], tmp_path / "worker.log") as worker:
        assert worker.request({"x": 21}) == {"y": 42}
        with pytest.raises(RuntimeError, match="negative"):
            worker.request({"x": -1})
        assert worker.request({"x": 1}) == {"y": 2}  # an error does not end the worker
        pid = worker.process.pid
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "library noise" in (tmp_path / "worker.log").read_text()


def test_worker_that_dies_is_reported_with_its_log(tmp_path):
    code = "import sys; print('boom: no model here', file=sys.stderr); sys.exit(3)"
    with (
        harness.Worker([sys.executable, "-c", code], tmp_path / "w.log") as worker,
        pytest.raises(RuntimeError, match="boom: no model here"),
    ):
        worker.request({"x": 1})


def _run(tmp_path: Path) -> dict:
    figure = harness.Figure("rollout batch 16", "tok_s", "tok/s", "fp32", ["fp32", "bf16", "kv"], skipped={})
    figure.skipped["kv"] = "rollout.engine.kv_reuse does not validate here"
    harness.interleave(figure, lambda v, r: {"tok_s": 10.0 if v == "fp32" else 15.0}, rounds=3)
    run = recording.Run("rollout", quick=True, command="python benchmarks/bench_rollout.py --quick")
    run.figures.append(figure)
    run.before = run.after = figure.before
    path = run.save(tmp_path)
    assert (tmp_path / "rollout.md").is_file() and (tmp_path / "rollout.png").stat().st_size > 0
    return json.loads(path.read_text())


def test_markdown_has_ratio_skips_command_and_quick_label(tmp_path):
    run = _run(tmp_path)
    text = figures.run_markdown(run)
    assert "| bf16 | 15.0 [15.0–15.0] | 1.50 [1.50–1.50] |" in text
    assert "skipped **kv**: rollout.engine.kv_reuse does not validate here" in text
    assert "`python benchmarks/bench_rollout.py --quick`" in text
    assert "not a figure" in text


def test_docs_section_is_rewritten_between_markers_only(tmp_path):
    _run(tmp_path)
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nmethod text\n\n{figures.BEGIN}\nold numbers\n{figures.END}\n\nafter\n")
    figures.rewrite(doc, figures.docs_section(tmp_path))
    text = doc.read_text()
    assert "old numbers" not in text and "method text" in text and text.endswith("\n\nafter\n")
    assert "#### rollout batch 16" in text
    doc.write_text("no markers")
    with pytest.raises(SystemExit, match="markers"):
        figures.rewrite(doc, "x")


def test_rollout_variants_that_do_not_validate_are_skipped_with_the_reason(tmp_path):
    import bench_rollout

    suite = bench_rollout.Suite(
        "rollout",
        {
            "base": [],
            "two threads": ["run.torch_threads=2"],
            "typo": ["rollout.engine.no_such_key=1"],
            "vllm": ["rollout.engine=vllm"],
        },
        [],
    )
    python, skipped = bench_rollout.plan(suite, tmp_path, tmp_path / "no-python", quick=False)
    assert python["base"] == python["two threads"] == sys.executable
    assert "rollout.engine.no_such_key=1" in skipped["typo"] and "does not validate" in skipped["typo"]
    if not bench_rollout.has_vllm():  # this environment has no vLLM and the given interpreter does not exist
        assert "no-python" in skipped["vllm"]
    assert bench_rollout.threads_of(["run.torch_threads=2"]) == 2 and bench_rollout.threads_of([]) == 1
