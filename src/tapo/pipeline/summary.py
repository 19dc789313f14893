"""The main job's results: one row per model (start, warm start, TAPO, baselines) on the TAPO-mini test split,
paired differences between them, and the issue's goals checked against their 95 % intervals.

Written as ``summary.md`` (pasted into README) and as the ``summary.json`` that the HTML report shows first.
Every accuracy carries its question count and 95 % interval, every comparison is a paired difference over the
same questions with its paired-bootstrap interval (:mod:`tapo.stats`), and a goal is "met" only when its whole
interval is on the right side of the bound, "not met" when the whole interval is on the wrong side, and
"inside the noise" otherwise: a point estimate alone never ticks a goal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from tapo.eval.job_summary import GoalResult, JobSummary, SummaryTable
from tapo.eval.result_dir import RESULTS_FILE
from tapo.eval.tables import to_markdown
from tapo.io.atomic import write_text
from tapo.pipeline.arms import BASE, NO_MASK, NO_TOOLS, SFT, TAPO, TOOL_COST, TOOL_COST_OTC, Arm, load_arms
from tapo.pipeline.levers import lever_notes
from tapo.pipeline.model_results import ModelResults, compare, load_model
from tapo.pipeline.seeds import (
    decide_on_seeds,
    gains_shown,
    pooled_gain,
    seed_gains,
    seed_table,
    seeded_arms,
    spread,
)
from tapo.pipeline.warm_start import DEMOS_FILE, demos_by_kind, warm_start_table
from tapo.stats import Interval, Verdict, verdict

KINDS = ("single_hop", "multi_hop", "code", "search_code", "no_tool")
# the arms the comparisons and goals below name: each must be one the job can run (tests/unit/test_pipeline.py)
NAMED_ARMS = (BASE, SFT, TAPO, NO_TOOLS, NO_MASK, TOOL_COST, TOOL_COST_OTC)
METHOD = (
    "95 % intervals: Wilson score interval for a share of questions, seeded percentile bootstrap over questions "
    "for other means, paired bootstrap over the same questions for differences (± the Wilson bound of 0 of n when "
    "no question changed; tapo.stats, docs/evaluation.md). "
    "A goal is met when its whole interval is on the right side of the bound, not met when it is wholly on the "
    "wrong side, and inside the noise otherwise. A goal about RL over the warm start, where TAPO ran with several "
    "seeds, is decided on all of them: met when every seed's interval is above 0 and the seeds' mean gain reaches "
    "the target, not met when some seed's interval is wholly at or below 0 or the seeds' pooled gain is wholly short "
    "of it, inside the noise otherwise."
)
ICONS = {Verdict.MET: "✅", Verdict.NOT_MET: "❌", Verdict.NOISE: "≈", Verdict.UNMEASURED: "–"}


@dataclass(frozen=True)
class Goal:
    """A goal of the issue, its measured interval and where it stands."""

    text: str
    interval: Interval | None
    op: str
    bound: float
    shown: str  # the measurement as printed
    decided: Verdict | None = None  # a verdict reached otherwise (a goal about RL, on every seed: tapo.pipeline.seeds)

    @property
    def verdict(self) -> Verdict:
        return self.decided if self.decided is not None else verdict(self.interval, self.op, self.bound)

    def line(self) -> str:
        return f"{ICONS[self.verdict]} {self.verdict.value}: {self.text}: {self.shown}"

    def result(self) -> GoalResult:
        """The goal as summary.json stores it."""
        return GoalResult(goal=self.text, verdict=self.verdict, measured=self.shown, interval=self.interval)


def _pct(interval: Interval | None, signed: bool = False) -> str:
    return "-" if interval is None else interval.pct(signed=signed)


def _diff_shown(interval: Interval | None) -> str:
    return "-" if interval is None else f"{interval.pct(signed=True)} points (paired, {interval.n} questions)"


def comparisons(models: dict[str, ModelResults]) -> list[tuple[str, Interval | None]]:
    """Each accuracy comparison the job states, as (label, paired difference): RL over the warm start, the warm
    start over the starting model, TAPO against each baseline, and any other arm against TAPO."""
    stated = [(SFT, BASE), (TAPO, SFT), (TAPO, NO_TOOLS), (TAPO, NO_MASK)]
    pairs = [(a.name, b.name) for a, b in stated]
    named = {arm.name for pair in stated for arm in pair}
    pairs += [(name, TAPO.name) for name in models if name not in named]
    return [
        (f"{models[a].title} − {models[b].title}", compare(models[a], models[b], lambda m: m.acc))
        for a, b in pairs
        if a in models and b in models
    ]


def goals(models: dict[str, ModelResults]) -> list[Goal]:
    """The issue's goals, each with the interval that decides it."""
    checks: list[Goal] = []
    tapo, sft = models.get(TAPO.name), models.get(SFT.name)
    if tapo and sft:
        checks += rl_goals(models, sft)
    if tapo:
        needed, not_needed = tapo.call_rate(True), tapo.call_rate(False)
        checks.append(Goal("≥ 90 % of tool-needing questions get a call", needed, ">=", 0.9, _with_n(needed)))
        checks.append(Goal("≤ 10 % of no-tool questions get a call", not_needed, "<=", 0.1, _with_n(not_needed)))
        if tapo.calls_needed:
            calls, need = tapo.calls_per_question(), fmean(tapo.calls_needed.values())
            shown = f"{calls.plain()} calls against {need:.2f} needed"
            checks.append(Goal("mean calls per question ≤ what the questions need", calls, "<=", need, shown))
    for arm, text, op in ((NO_TOOLS, "TAPO beats DAPO without tools", ">"), (NO_MASK, "masking ≥ no masking", ">=")):
        if tapo and arm.name in models:
            diff = compare(tapo, models[arm.name], lambda m: m.acc)
            checks.append(Goal(text, diff, op, 0.0, _diff_shown(diff)))
    for arm, form in ((TOOL_COST, "bonus"), (TOOL_COST_OTC, "OTC-GRPO reward")):
        cost = models.get(arm.name)
        if tapo and cost:  # the goal holds only at no loss of accuracy: both are stated
            not_needed = cost.call_rate(False)
            text = f"with the tool-cost {form} ≤ 10 % of no-tool questions get a call"
            checks.append(Goal(text, not_needed, "<=", 0.1, _with_n(not_needed)))
            loss = compare(cost, tapo, lambda m: m.acc)
            text = f"the tool-cost {form} costs no accuracy (interval reaches 0)"
            checks.append(Goal(text, loss, "reaches", 0.0, _diff_shown(loss)))
    return checks


def rl_goals(models: dict[str, ModelResults], sft: ModelResults) -> list[Goal]:
    """The goals about RL over the warm start: on TAPO's one run, or, when it ran with several seeds, decided on
    all of them (:func:`tapo.pipeline.seeds.decide_on_seeds`: every seed's interval above 0, the mean gain at
    least the target), with the pooled gain as the interval."""
    targets = (("RL raises accuracy over the warm start", ">", 0.0),
               ("RL raises accuracy over the warm start by ≥ 10 points", ">=", 0.10))  # fmt: skip
    runs = seeded_arms(models).get(TAPO.name)
    if runs is None:
        gain = compare(models[TAPO.name], sft, lambda m: m.acc)
        return [Goal(text, gain, op, bound, _diff_shown(gain)) for text, op, bound in targets]
    gains = seed_gains(runs, sft, ())
    pooled = pooled_gain(runs, sft)
    return [
        Goal(f"{text} (on every seed)", pooled, op, bound, gains_shown(gains), decide_on_seeds(gains, pooled, bound))
        for text, op, bound in targets
    ]


def _with_n(interval: Interval | None) -> str:
    return "-" if interval is None else f"{interval.pct()} % of {interval.n} questions"


def seed_spread(models: dict[str, ModelResults]) -> list[str]:
    """For an arm run with several seeds (``tapo``, ``tapo-seed1``, ...): each seed's accuracy and the spread."""
    lines = []
    for arm, runs in seeded_arms(models).items():
        accs = [fmean(m.acc.values()) for _, m in runs]
        mean, sd = spread(accs)
        each = ", ".join(f"{100 * a:.1f}" for a in accs)
        summary = f"mean {100 * mean:.1f}, sd {100 * sd:.1f}, range {100 * (max(accs) - min(accs)):.1f} points"
        lines.append(f"{models[arm].title}: {len(accs)} seeds, accuracy {each} ({summary})")
    return lines


def tables(models: dict[str, ModelResults], demos: Counter[str] | None = None) -> list[SummaryTable]:
    """The summary's tables (caption, headers, rows): headline numbers, accuracy by question kind, differences."""
    counts = sorted({len(m.acc) for m in models.values()})
    questions = "/".join(map(str, counts))
    main = SummaryTable(
        caption=(
            f"Accuracy (%) on {questions} questions of the TAPO-mini test split (held-out entities), greedy "
            "decoding, with 95 % intervals; tool-call rates (%) by whether the question needs a tool; calls per "
            "question against what the questions' oracle plans need."
        ),
        headers=[
            "model",
            "questions",
            "acc % [95 % CI]",
            "calls when needed %",
            "calls when not needed %",
            "calls/question",
            "calls needed",
            "format errors %",
        ],
        rows=[
            [
                m.title,
                str(len(m.acc)),
                _pct(m.share(m.acc)),
                _pct(m.call_rate(True)),
                _pct(m.call_rate(False)),
                m.calls_per_question().plain(),
                f"{fmean(m.calls_needed.values()):.2f}" if m.calls_needed else "-",
                f"{100 * m.format_error_rate:.1f}",
            ]
            for m in models.values()
        ],
    )
    kinds = [k for k in KINDS if any(k in m.kind.values() for m in models.values())]
    first = next(iter(models.values()))
    per_kind = {k: sum(v == k for v in first.kind.values()) for k in kinds}
    kind_headers = ["model", *(f"{k} (n={per_kind[k]})" for k in kinds)]
    by_kind = SummaryTable(
        caption="Accuracy (%) by question kind with 95 % intervals; n = questions of the kind.",
        headers=kind_headers,
        rows=[[m.title, *(_pct(acc.get(k)) for k in kinds)] for m in models.values() if (acc := m.acc_by_kind())],
    )
    plans = SummaryTable(
        caption=(
            "Questions (%) whose tools were called exactly as their oracle plan calls them (same tools, same order; "
            "no call for no_tool), by kind, with 95 % intervals: a right plan read wrongly and a wrong tool tell "
            "apart here."
        ),
        headers=kind_headers,
        rows=[
            [m.title, *(_pct(followed.get(k)) for k in kinds)]
            for m in models.values()
            if (followed := m.by_kind(m.followed_plan))
        ],
    )
    sft = models.get(SFT.name)
    warm = [warm_start_table(sft, demos, kinds)] if sft and demos else []
    seeded = [
        seed_table(models[arm].title, seed_gains(runs, sft, kinds), pooled_gain(runs, sft), kinds)
        for arm, runs in seeded_arms(models).items()
    ] if sft else []  # fmt: skip
    diffs = comparisons(models)
    paired = SummaryTable(
        caption="Paired differences in accuracy (points) over the same questions, paired-bootstrap 95 % intervals.",
        headers=["comparison", "questions", "difference [95 % CI]"],
        rows=[[label, str(d.n) if d else "0", _pct(d, signed=True)] for label, d in diffs],
    )
    return [main, by_kind] + ([plans] if plans.rows else []) + warm + ([paired] if diffs else []) + seeded


def labels(arms: Sequence[Arm]) -> dict[str, str]:
    """What the report calls each directory of the run: evaluations and training runs by the table's names."""
    models = [BASE, SFT, *arms]
    return {f"eval/{arm.name}": arm.title for arm in models} | {arm.name: arm.title for arm in models if arm != BASE}


def write_results(root: Path, arms: Sequence[Arm]) -> str:
    """Collect every finished evaluation of the starting model, the warm start and ``arms`` under ``root/eval``
    into summary.md / summary.json; returns the markdown.

    ``summary.json`` (:class:`JobSummary`) holds the tables as the report renders them (captions, headers, rows),
    the goal lines, the names of the run's directories, and the raw intervals.
    """
    models = {
        arm.name: load_model(arm.name, arm.title, root / "eval" / arm.name)
        for arm in (BASE, SFT, *arms)
        if (root / "eval" / arm.name / RESULTS_FILE).is_file()
    }
    if not models:
        raise FileNotFoundError(f"no finished evaluation under {root / 'eval'}: run the evaluation stages first")
    parts = tables(models, demos_by_kind(root / DEMOS_FILE))
    checks = goals(models)
    spread = seed_spread(models)
    levers = lever_notes(root, arms)
    text = "\n".join(f"{t.caption}\n\n{to_markdown(t.headers, t.rows)}" for t in parts)
    if checks:
        text += "\nGoals:\n\n" + "\n".join(f"- {g.line()}" for g in checks) + "\n"
    if spread:
        text += "\nSeeds:\n\n" + "\n".join(f"- {line}" for line in spread) + "\n"
    if levers:
        text += "\nRL rollouts and levers beyond TAPO:\n\n" + "\n".join(f"- {line}" for line in levers) + "\n"
    text += f"\n{METHOD}\n"
    write_text(root / "summary.md", text)
    JobSummary(
        tables=parts,
        notes=[*spread, *levers, METHOD],
        labels=labels(arms),
        goals=[g.result() for g in checks],
        comparisons=dict(comparisons(models)),
    ).save(root)
    return text


def rebuild(root: Path) -> str | None:
    """Rewrite a job directory's summary from its finished evaluations and the arms the job recorded
    (``arms.json``); None, writing nothing, when ``root`` is not a job directory."""
    arms = load_arms(root)
    return None if arms is None else write_results(root, arms)
