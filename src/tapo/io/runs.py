"""Run directories: ``runs/<name>/`` with the resolved config, metrics, checkpoints, trajectories, report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tapo.config.loader import dump_config
from tapo.config.schema import TapoConfig
from tapo.io.atomic import append_jsonl, write_text


@dataclass(frozen=True)
class RunDir:
    """The layout of one run directory; creating it writes the resolved config."""

    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics_file(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def trajectories_file(self) -> Path:
        return self.root / "trajectories.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @classmethod
    def create(cls, config: TapoConfig) -> RunDir:
        run = cls(Path(config.run.output_dir) / config.run.name)
        run.root.mkdir(parents=True, exist_ok=True)
        run.checkpoints.mkdir(exist_ok=True)
        write_text(run.config_file, dump_config(config))
        return run

    def log_metrics(self, row: dict[str, Any]) -> None:
        append_jsonl(self.metrics_file, [row])

    def log_trajectories(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            append_jsonl(self.trajectories_file, rows)
