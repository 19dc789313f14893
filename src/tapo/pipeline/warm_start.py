"""The warm start at a glance, by question kind: how many demonstrations of each kind it learnt from, and on the test
split how often it calls its tools exactly as the oracle plan does, and how often it is right.

RL reinforces only what the policy already does sometimes: a kind whose plan the warm start almost never follows
(search_code, 1.7 % in issue 32) gives groups with no success, which teach nothing. This table is where that shows,
so a stronger warm start (``demos: all`` in a profile) can be judged by it before any RL is spent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tapo.eval.job_summary import SummaryTable
from tapo.io.atomic import read_jsonl
from tapo.pipeline.model_results import ModelResults

DEMOS_FILE = "demos.jsonl"  # the job's warm-start demonstrations, one trajectories.jsonl row each


def demos_by_kind(demos_file: Path) -> Counter[str]:
    """Demonstrations per question kind (``example.meta.kind``) in a demonstrations file; empty when there is none."""
    if not demos_file.is_file():
        return Counter()
    return Counter(
        str(((row.get("example") or {}).get("meta") or {}).get("kind", "?")) for row in read_jsonl(demos_file)
    )


def warm_start_table(sft: ModelResults, demos: Counter[str], kinds: Sequence[str]) -> SummaryTable:
    """One row per kind: demonstrations, test questions, plan followed and accuracy of the warm start, with 95 %
    intervals (Wilson)."""
    followed, acc = sft.by_kind(sft.followed_plan), sft.acc_by_kind()
    questions = Counter(sft.kind.values())
    rows = [
        [kind, str(demos.get(kind, 0)), str(questions.get(kind, 0)),
         followed[kind].pct() if kind in followed else "-", acc[kind].pct() if kind in acc else "-"]
        for kind in kinds
    ]  # fmt: skip
    total = sum(demos.values())
    return SummaryTable(
        caption=(
            f"{sft.title} by question kind: the demonstrations it was trained on ({total} in all, oracle plans "
            "replayed through the real tools), and on the test split the questions (%) whose tools it called exactly "
            "as their oracle plan (same tools, same order; no call for no_tool) and its accuracy (%), with 95 % "
            "intervals. A kind whose plan it rarely follows gives RL groups with no success to learn from."
        ),
        headers=["kind", "demonstrations", "test questions", "plan followed % [95 % CI]", "acc % [95 % CI]"],
        rows=rows,
    )
