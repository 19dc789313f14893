"""What each stage of the main job leaves behind, and whether it is still there and intact.

The state file only says a stage finished once; its outputs can be deleted or damaged since. Before a finished
stage is skipped, the runner asks its check here (``None``: intact, else a short reason), and a stage whose outputs
fail is run again. The checks are the ones resuming uses, all cheap (headers, hashes, small JSON files): data
files against the sha256 in their manifest, demonstrations line by line, an evaluation's ``results.json``, a
training run's newest checkpoint through :func:`tapo.train.checkpoint.verify_checkpoint`.
"""

from __future__ import annotations

import json
from pathlib import Path

from tapo.data.io import sha256_files
from tapo.models.integrity import check_files

MANIFEST_FILE = "manifest.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def data_problem(data_dir: Path) -> str | None:
    """The data set and its index: every file the manifest lists with the hash it recorded, and a readable index."""
    from tapo.tools.search.corpus import read_meta  # lazy: the search package loads its index libraries

    manifest = data_dir / MANIFEST_FILE
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{manifest} is missing or unreadable ({type(error).__name__})"
    for name, digest in recorded.items():
        path = data_dir / name
        if not path.is_file():
            return f"{path} is missing"
        if sha256_files([path])[name] != digest:
            return f"{path} differs from the sha256 in {MANIFEST_FILE}"
    try:
        read_meta(data_dir / "index")
        check_files(data_dir / "index")
    except (OSError, ValueError) as error:
        return str(error)
    return None


def demos_problem(demos_file: Path) -> str | None:
    """The demonstrations: a file of at least one JSON object per line."""
    try:
        lines = [line for line in demos_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError:
        return f"{demos_file} is missing"
    for number, line in enumerate(lines, start=1):
        try:
            if not isinstance(json.loads(line), dict):
                raise ValueError
        except ValueError:
            return f"{demos_file}:{number} is not a JSON object"
    return None if lines else f"{demos_file} is empty"


def eval_problem(out_dir: Path) -> str | None:
    """An evaluation: its ``results.json`` (written last) loads and its trajectories are there."""
    from tapo.eval.result_dir import RESULTS_FILE, TRAJECTORIES_FILE, load_result  # lazy: the metrics' imports

    if not (out_dir / RESULTS_FILE).is_file():
        return f"{out_dir / RESULTS_FILE} is missing"
    try:
        load_result(out_dir)
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{out_dir / RESULTS_FILE} is unreadable ({type(error).__name__}: {str(error)[:120]})"
    if not (out_dir / TRAJECTORIES_FILE).is_file():
        return f"{out_dir / TRAJECTORIES_FILE} is missing"
    return None


def _model_problem(model_dir: Path) -> str | None:
    if not (model_dir / "config.json").is_file():
        return f"{model_dir} has no config.json"
    if not any(path.suffix in WEIGHT_SUFFIXES for path in model_dir.iterdir()):
        return f"{model_dir} has no weights"
    return None


def _last_logged_step(metrics: Path) -> int:
    """The last step in ``metrics.jsonl`` (0 when there is none): a finished run saved a checkpoint there."""
    steps = [0]
    if metrics.is_file():
        for line in metrics.read_text(encoding="utf-8").splitlines():
            try:
                steps.append(int(json.loads(line).get("step", 0)))
            except (ValueError, AttributeError, TypeError):
                continue
    return max(steps)


def run_problem(run_dir: Path) -> str | None:
    """A finished training run: its newest complete checkpoint verifies (every file's header), holds a model
    with weights, and is the step the run logged last (a finished run checkpoints its last step)."""
    from tapo.train.checkpoint import CheckpointError, list_checkpoints, verify_checkpoint  # lazy: loads torch

    found = list_checkpoints(run_dir / "checkpoints")
    if not found:
        return f"{run_dir} has no complete checkpoint"
    newest = found[-1]
    try:
        verify_checkpoint(newest)
    except CheckpointError as error:
        return str(error)
    if problem := _model_problem(newest / "model"):
        return problem
    last = _last_logged_step(run_dir / "metrics.jsonl")
    step = int(newest.name.split("-", 1)[1])
    return f"its newest checkpoint is {newest.name} but it trained to step {last}" if step < last else None


def set_aside_unusable(run_dir: Path) -> list[Path]:
    """Set aside (rename, never delete) every ``step-*`` of ``run_dir`` that fails the checks of resuming, so a
    stage that starts over is not refused for a finished run it cannot use; returns the new paths."""
    from tapo.train.checkpoint import CheckpointError, set_aside, verify_checkpoint  # lazy: loads torch

    moved = []
    for checkpoint in sorted((run_dir / "checkpoints").glob("step-*")):
        try:
            verify_checkpoint(checkpoint)
            problem = _model_problem(checkpoint / "model")
        except (CheckpointError, OSError) as error:
            problem = str(error)
        if problem:
            moved.append(set_aside(checkpoint, f"it cannot be used ({problem})"))
    return moved


def report_problem(root: Path) -> str | None:
    """The report stage: ``summary.md``, a readable ``summary.json`` and ``report/report.html``."""
    for path in (root / "summary.md", root / "report" / "report.html"):
        if not path.is_file():
            return f"{path} is missing"
    try:
        json.loads((root / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{root / 'summary.json'} is missing or unreadable"
    return None
