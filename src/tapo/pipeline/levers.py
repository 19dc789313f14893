"""What the RL arms' rollouts bought and what their optional levers did, read back from each arm's ``metrics.jsonl``:
notes for ``summary.md``.

Every RL arm gets the share of its sampled trajectories that landed in informative groups (the rollout compute that
bought gradient; ``sampling/informative_frac``), with the prompts skipping held back when it was on. A lever that
departs from TAPO (guidance, ``trainer.guidance``) changes what the table's RL rows mean, so the summary says when it
was on and how much it did; a lever that was off logs nothing and gets no note.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tapo.io.atomic import read_jsonl
from tapo.pipeline.arms import Arm


def _rows(root: Path, arm: Arm, key: str) -> list[dict[str, float]]:
    """The rows of ``arm``'s RL metrics that hold ``key`` (none when the run is missing or never logged it)."""
    metrics = root / arm.name / "metrics.jsonl"
    return [row for row in read_jsonl(metrics) if key in row] if metrics.is_file() else []


def rollout_note(root: Path, arm: Arm) -> str | None:
    """One line on where ``arm``'s rollouts went: trajectories sampled over the run, the share in informative groups
    (weighted by each step's trajectories), and the prompts held back when skipping (trainer.skip_constant) was on."""
    rows = [row for row in _rows(root, arm, "sampling/informative_frac") if "sampled/trajectories" in row]
    sampled = sum(row["sampled/trajectories"] for row in rows)
    if not sampled:
        return None
    informative = sum(row["sampling/informative_frac"] * row["sampled/trajectories"] for row in rows)
    line = (
        f"{arm.title}: {informative / sampled:.0%} of the {int(sampled)} trajectories sampled over {len(rows)} steps "
        "were in informative groups (the rest cost a rollout and carried no gradient"
    )
    if all("sampling/all_wrong_frac" in row for row in rows):  # runs before the split was logged lack it
        wrong = sum(row["sampling/all_wrong_frac"] * row["sampled/trajectories"] for row in rows)
        right = sum(row["sampling/all_right_frac"] * row["sampled/trajectories"] for row in rows)
        line += f": {wrong / sampled:.0%} in groups with every answer wrong, {right / sampled:.0%} all right"
    line += ")"
    skipped = sum(row.get("sampling/skipped_prompts", 0.0) for row in rows)
    if any("sampling/skipped_prompts" in row for row in rows):
        line += f"; skipping (trainer.skip_constant, GRESO, not in TAPO) held back {int(skipped)} prompts"
    return line


def guidance_note(root: Path, arm: Arm) -> str | None:
    """One line when ``arm``'s RL run had guidance on (it logged ``guidance/*``): experts injected against the
    groups with no success it sampled; None when it was off or the run logged nothing."""
    rows = _rows(root, arm, "guidance/injected")
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
    """Every note of the arms' rollouts and levers, in the arms' order."""
    notes = [note(root, arm) for arm in arms for note in (rollout_note, guidance_note)]
    return [line for line in notes if line is not None]
