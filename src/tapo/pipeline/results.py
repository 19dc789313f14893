"""The main job's results table: one row per model (start, warm start, TAPO, baselines) on the TAPO-mini test
split, the issue's goals checked against it, written as markdown (pasted into README) and as the JSON that the
HTML report shows first."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from tapo.eval.report import SUMMARY_FILE
from tapo.eval.results import RESULTS_FILE, load_result, load_trajectories
from tapo.eval.tables import to_markdown
from tapo.io.atomic import write_json, write_text
from tapo.protocol import TOOL_NAMES

KINDS = ("single_hop", "multi_hop", "code", "search_code", "no_tool")
CAPTION = (
    "Accuracy (%) on the TAPO-mini test split (held-out entities), greedy decoding; tool-call rates (%) by whether "
    "the question needs a tool; calls per question against what the questions' oracle plans need."
)
HEADERS = [
    "model", "acc", *KINDS, "calls when needed", "calls when not needed", "calls/question", "calls needed",
    "format errors",
]  # fmt: skip


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def row_for(name: str, eval_dir: Path) -> dict[str, Any]:
    """Headline numbers of one evaluation, with accuracy split by question kind."""
    result = load_result(eval_dir)
    overall = result.overall
    by_kind: dict[str, list[bool]] = defaultdict(list)
    calls_needed: list[int] = []
    for trajectory in load_trajectories(eval_dir):
        meta = trajectory.example.meta if trajectory.example else {}
        by_kind[meta.get("kind", "?")].append(trajectory.scored.acc)
        calls_needed.append(sum(1 for step in meta.get("plan", []) if step["tool"] in TOOL_NAMES))
    adaptive = overall.adaptive
    return {
        "model": name,
        "acc": overall.acc,
        "acc_by_kind": {k: sum(v) / len(v) for k, v in by_kind.items()},
        "call_rate_when_needed": adaptive.call_rate_when_needed if adaptive else None,
        "call_rate_when_not_needed": adaptive.call_rate_when_not_needed if adaptive else None,
        "calls_per_question": sum(overall.tool_calls_mean.values()),
        "calls_needed_per_question": sum(calls_needed) / max(1, len(calls_needed)),
        "format_error_rate": overall.format_error_rate,
        "questions": overall.questions,
    }


def _cells(row: dict[str, Any]) -> list[str]:
    return [
        row["model"], _pct(row["acc"]), *(_pct(row["acc_by_kind"].get(k)) for k in KINDS),
        _pct(row["call_rate_when_needed"]), _pct(row["call_rate_when_not_needed"]),
        f"{row['calls_per_question']:.2f}", f"{row['calls_needed_per_question']:.2f}", _pct(row["format_error_rate"]),
    ]  # fmt: skip


def _at_least(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound


def _at_most(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound


def goals(rows: dict[str, dict[str, Any]]) -> list[tuple[str, bool | None, str]]:
    """The issue's goals: (goal, met or None when the run lacks the arm, what was measured)."""
    checks: list[tuple[str, bool | None, str]] = []
    sft, tapo = rows.get("sft"), rows.get("tapo")
    if sft and tapo:
        gain = tapo["acc"] - sft["acc"]
        checks.append(("RL raises accuracy over the warm start by ≥ 10 points", gain >= 0.10, f"{100 * gain:+.1f}"))
    if tapo:
        needed, not_needed = tapo["call_rate_when_needed"], tapo["call_rate_when_not_needed"]
        checks.append(("≥ 90 % of tool-needing questions get a call", _at_least(needed, 0.9), _pct(needed)))
        checks.append(("≤ 10 % of no-tool questions get a call", _at_most(not_needed, 0.1), _pct(not_needed)))
        calls, need = tapo["calls_per_question"], tapo["calls_needed_per_question"]
        checks.append(
            ("mean calls per question ≤ what the questions need", calls <= need, f"{calls:.2f} vs {need:.2f}")
        )
    cost = rows.get("tapo-tool-cost")
    if tapo and cost:  # the accuracy beside it: the goal holds only at no loss of accuracy
        not_needed = cost["call_rate_when_not_needed"]
        measured = f"{_pct(not_needed)} (accuracy {_pct(cost['acc'])} vs TAPO {_pct(tapo['acc'])})"
        checks.append(
            ("with the tool-cost bonus ≤ 10 % of no-tool questions get a call", _at_most(not_needed, 0.1), measured)
        )
    for arm, goal in (("dapo-no-tools", "TAPO beats DAPO without tools"), ("tapo-no-mask", "masking beats no masking")):
        if tapo and arm in rows:
            checks.append((goal, tapo["acc"] > rows[arm]["acc"], f"{_pct(tapo['acc'])} vs {_pct(rows[arm]['acc'])}"))
    return checks


def write_results(root: Path, arms: list[tuple[str, str, str, list[str]]]) -> str:
    """Collect every finished evaluation under ``root/eval`` into summary.md / summary.json; returns the markdown.

    ``summary.json`` holds the table as the report renders it (title, headers, rows, notes) plus the raw numbers.
    """
    titles = {"base": "starting model", "sft": "warm start (SFT)", **{name: title for name, title, *_ in arms}}
    rows = {
        name: row_for(title, root / "eval" / name)
        for name, title in titles.items()
        if (root / "eval" / name / RESULTS_FILE).is_file()
    }
    cells = [_cells(row) for row in rows.values()]
    verdicts = {True: ("✅", "met"), False: ("❌", "missed"), None: ("–", "not measured")}
    checks = goals(rows)
    notes = [f"{verdicts[met][1]}: {goal} ({measured})" for goal, met, measured in checks]
    lines = [f"- {verdicts[met][0]} {goal}: {measured}" for goal, met, measured in checks]
    goals_text = "\n\nGoals:\n\n" + "\n".join(lines) if lines else ""
    markdown = f"{CAPTION}\n\n{to_markdown(HEADERS, cells)}{goals_text}\n"
    write_text(root / "summary.md", markdown)
    write_json(
        root / SUMMARY_FILE,
        {"title": "Results", "caption": CAPTION, "headers": HEADERS, "rows": cells, "notes": notes, "numbers": rows},
    )
    return markdown
