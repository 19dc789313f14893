"""The on-disk form of an evaluation: ``results.json``, ``results.md`` and ``trajectories.jsonl`` in one dir.

An ablation (``--ablate``) writes one such directory per tool mode under its output dir, plus
``ablation.json`` / ``ablation.md`` with one row per mode. Reports find evaluations by these file names.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tapo.eval.metrics import OVERALL, SourceMetrics, metrics_from_dict
from tapo.eval.tables import ACC_NOTE, ADAPTIVE_HEADERS, adaptive_table, metric_table, to_markdown
from tapo.io.atomic import read_jsonl, write_json, write_jsonl, write_text
from tapo.records import Trajectory

RESULTS_FILE = "results.json"
TABLE_FILE = "results.md"
TRAJECTORIES_FILE = "trajectories.jsonl"
ABLATION_FILE = "ablation.json"
ABLATION_TABLE_FILE = "ablation.md"


@dataclass
class EvalResult:
    """What one evaluation measured, and how it was run (so a table can always be traced to its setup)."""

    model: str
    data: str
    tools_mode: str
    template: str
    samples: int
    greedy: bool
    metrics: dict[str, SourceMetrics]
    accuracy_by_searches: dict[int, tuple[float, int]]
    out_dir: Path | None = None
    trajectories: list[Trajectory] = field(default_factory=list, repr=False)
    engine: dict[str, float] = field(default_factory=dict)  # kv/*: the transformers engine's KV-store counters

    @property
    def overall(self) -> SourceMetrics:
        return self.metrics[OVERALL]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "data": self.data,
            "tools_mode": self.tools_mode,
            "template": self.template,
            "samples": self.samples,
            "greedy": self.greedy,
            "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
            "accuracy_by_searches": {str(n): list(v) for n, v in self.accuracy_by_searches.items()},
            "engine": self.engine,
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any], out_dir: Path | None = None) -> EvalResult:
        return cls(
            model=row["model"],
            data=row["data"],
            tools_mode=row["tools_mode"],
            template=row["template"],
            samples=row["samples"],
            greedy=row["greedy"],
            metrics={name: metrics_from_dict(m) for name, m in row["metrics"].items()},
            accuracy_by_searches={int(n): (float(a), int(c)) for n, (a, c) in row["accuracy_by_searches"].items()},
            out_dir=out_dir,
            engine=dict(row.get("engine", {})),  # results written before engine counters were kept have none
        )

    def markdown(self) -> str:
        headers, rows = metric_table(self.metrics)
        text = (
            f"# Evaluation of `{self.model}` on `{self.data}`\n\n"
            f"tools: {self.tools_mode} (template `{self.template}`), samples per question: {self.samples}, "
            f"{'greedy' if self.greedy else 'sampled'}\n\n" + to_markdown(headers, rows) + f"\n{ACC_NOTE}.\n"
        )
        adaptive = adaptive_table(self.metrics)
        if adaptive:
            text += "\n## Adaptive tool use (by `meta.needs`)\n\n" + to_markdown(ADAPTIVE_HEADERS, adaptive)
        return text

    def save(self, out_dir: Path) -> None:
        """Write the JSON, the markdown table and the trajectories, each atomically."""
        self.out_dir = out_dir
        write_jsonl(out_dir / TRAJECTORIES_FILE, (t.to_row() for t in self.trajectories))
        write_text(out_dir / TABLE_FILE, self.markdown())
        write_json(out_dir / RESULTS_FILE, self.to_dict())  # last: its presence marks a complete evaluation


def load_result(out_dir: Path) -> EvalResult:
    return EvalResult.from_dict(json.loads((out_dir / RESULTS_FILE).read_text(encoding="utf-8")), out_dir)


def load_stepped_trajectories(out_dir: Path) -> list[tuple[int | None, Trajectory]]:
    """(training step or None, trajectory) for each row an evaluation, a training run or chat wrote."""
    path = out_dir / TRAJECTORIES_FILE
    rows = read_jsonl(path) if path.is_file() else []
    return [(row.get("step"), Trajectory.from_row(row)) for row in rows]


def load_trajectories(out_dir: Path) -> list[Trajectory]:
    """The trajectories an evaluation or a training run wrote (none when it wrote no file)."""
    return [trajectory for _, trajectory in load_stepped_trajectories(out_dir)]


def ablation_table(results: Sequence[EvalResult]) -> tuple[list[str], list[list[str]]]:
    """One row per tool mode (overall metrics), the same columns as the per-source table."""
    return metric_table({r.tools_mode: r.overall for r in results}, label="tools")


def save_ablation(results: Sequence[EvalResult], out_dir: Path) -> None:
    headers, rows = ablation_table(results)
    first = results[0]
    write_text(
        out_dir / ABLATION_TABLE_FILE,
        f"# Tool ablation of `{first.model}` on `{first.data}`\n\n" + to_markdown(headers, rows) + f"\n{ACC_NOTE}.\n",
    )
    write_json(out_dir / ABLATION_FILE, {"modes": [r.tools_mode for r in results], "overall": rows})
