"""What the RL arms' optional levers did, read back from each arm's ``metrics.jsonl``: notes for ``summary.md``.

A lever that departs from TAPO (guidance, ``trainer.guidance``) changes what the table's RL rows mean, so the summary
says when it was on and how much it did; a lever that was off logs nothing and gets no note.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tapo.io.atomic import read_jsonl
from tapo.pipeline.arms import Arm


def guidance_note(root: Path, arm: Arm) -> str | None:
    """One line when ``arm``'s RL run had guidance on (it logged ``guidance/*``): experts injected against the
    groups with no success it sampled; None when it was off or the run logged nothing."""
    metrics = root / arm.name / "metrics.jsonl"
    rows = [row for row in read_jsonl(metrics) if "guidance/injected" in row] if metrics.is_file() else []
    if not rows:
        return None
    injected = int(sum(row["guidance/injected"] for row in rows))
    failed = int(sum(row.get("guidance/failed_groups", 0) for row in rows))
    trained = int(sum(row.get("batch/trajectories", 0) for row in rows))
    return (
        f"{arm.title}: guidance on (trainer.guidance, not in TAPO: docs/method.md §4): {injected} expert "
        f"trajectories (oracle plans replayed through the tools) replaced a member of {injected} of the {failed} "
        f"sampled groups with no right answer, over {len(rows)} steps that trained on {trained} trajectories"
    )


def lever_notes(root: Path, arms: Sequence[Arm]) -> list[str]:
    """Every note of the arms' levers, in the arms' order."""
    return [note for arm in arms if (note := guidance_note(root, arm)) is not None]
