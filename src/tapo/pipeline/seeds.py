"""RL across seeds: the warm start is one run, RL is a random process, so a claim about RL is made on every seed.

For an arm run with several seeds (``tapo``, ``tapo-seed1``, ...; :meth:`tapo.pipeline.arms.Arm.seeded`), each seed's
paired difference against the warm start over the same questions, with its paired-bootstrap 95 % interval, overall
and per question kind; the mean and the sample sd of the gains across seeds; and the verdict of a goal about RL
decided on all of them (:func:`decide_on_seeds`): one lucky seed cannot tick it, one unlucky seed cannot sink it
into the noise unseen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean, stdev

from tapo.eval.job_summary import SummaryTable
from tapo.pipeline.arms import seed_of
from tapo.pipeline.model_results import Key, ModelResults, compare
from tapo.stats import Interval, Verdict, paired_difference


@dataclass(frozen=True)
class SeedGain:
    """One seed of an arm against the warm start: the paired accuracy difference, overall and by question kind."""

    seed: int
    model: ModelResults
    overall: Interval | None
    by_kind: dict[str, Interval]


def seeded_arms(models: dict[str, ModelResults]) -> dict[str, list[tuple[int, ModelResults]]]:
    """Every arm evaluated with two or more seeds (the arm itself is seed 0), its runs by seed."""
    by_arm: dict[str, list[tuple[int, ModelResults]]] = {}
    for name, model in models.items():
        arm, seed = seed_of(name)
        by_arm.setdefault(arm, []).append((seed, model))
    return {
        arm: sorted(runs, key=lambda run: run[0]) for arm, runs in by_arm.items() if len(runs) > 1 and arm in models
    }


def compare_kind(a: ModelResults, b: ModelResults, kind: str) -> Interval | None:
    """Paired difference a − b in accuracy over the questions of one kind both models answered."""
    keys = sorted(k for k in set(a.acc) & set(b.acc) if a.kind.get(k) == kind)
    return paired_difference([a.acc[k] for k in keys], [b.acc[k] for k in keys]) if keys else None


def seed_gains(
    runs: Sequence[tuple[int, ModelResults]], baseline: ModelResults, kinds: Sequence[str]
) -> list[SeedGain]:
    """Each seed's paired gain over ``baseline`` (the warm start), overall and for each of ``kinds``."""
    gains = []
    for seed, model in runs:
        by_kind = {kind: d for kind in kinds if (d := compare_kind(model, baseline, kind)) is not None}
        gains.append(SeedGain(seed, model, compare(model, baseline, lambda m: m.acc), by_kind))
    return gains


def pooled_gain(runs: Sequence[tuple[int, ModelResults]], baseline: ModelResults) -> Interval | None:
    """The seeds' mean accuracy per question minus the baseline's, over the questions every seed and the baseline
    answered, with its paired-bootstrap interval: the mean gain's uncertainty from the questions (the seeds' own
    spread is the sd beside it)."""
    shared: set[Key] = set(baseline.acc)
    for _, model in runs:
        shared &= set(model.acc)
    keys = sorted(shared)
    if not keys or not runs:
        return None
    mean_acc = [fmean(model.acc[k] for _, model in runs) for k in keys]  # [questions]
    return paired_difference(mean_acc, [baseline.acc[k] for k in keys])


def spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample sd (n − 1; 0 for one value) of per-seed gains."""
    return fmean(values), stdev(values) if len(values) > 1 else 0.0


def decide_on_seeds(gains: Sequence[SeedGain], pooled: Interval | None, bound: float) -> Verdict:
    """A goal "RL gains over the warm start, by at least ``bound``" decided on every seed.

    Met when every seed's interval is above 0 and the mean gain across seeds is at least ``bound``; not met when some
    seed's whole interval is at or below 0 (that seed did not gain) or the pooled gain's whole interval is below
    ``bound`` (at or below it when ``bound`` is 0); inside the noise otherwise.
    """
    intervals = [g.overall for g in gains]
    if not intervals or pooled is None or any(i is None for i in intervals):
        return Verdict.UNMEASURED
    known = [i for i in intervals if i is not None]
    mean = fmean(i.estimate for i in known)
    if all(i.low > 0 for i in known) and mean >= bound:
        return Verdict.MET
    short = pooled.high <= bound if bound <= 0 else pooled.high < bound
    if any(i.high <= 0 for i in known) or short:
        return Verdict.NOT_MET
    return Verdict.NOISE


def _signed(interval: Interval | None) -> str:
    return "-" if interval is None else interval.pct(signed=True)


def gains_shown(gains: Sequence[SeedGain]) -> str:
    """The seeds' gains as a goal prints them: each with its interval, then mean and sd."""
    each = ", ".join(f"seed {g.seed} {_signed(g.overall)}" for g in gains)
    known = [g.overall.estimate for g in gains if g.overall is not None]
    if not known:
        return each
    mean, sd = spread(known)
    return f"{each}; mean {100 * mean:+.1f}, sd {100 * sd:.1f} points over {len(gains)} seeds"


def seed_table(title: str, gains: Sequence[SeedGain], pooled: Interval | None, kinds: Sequence[str]) -> SummaryTable:
    """Each seed's paired gain over the warm start (overall, then by kind), then the mean and sd across seeds."""
    rows = [
        [f"seed {g.seed}", str(g.overall.n) if g.overall else "0", _signed(g.overall),
         *(_signed(g.by_kind.get(kind)) for kind in kinds)]
        for g in gains
    ]  # fmt: skip
    mean_row, sd_row = ["mean of seeds", "", _signed(pooled)], ["sd of seeds (n − 1)", "", ""]
    overall = [g.overall.estimate for g in gains if g.overall is not None]
    if overall:
        sd_row[2] = f"{100 * spread(overall)[1]:.1f}"
    for kind in kinds:
        values = [d.estimate for g in gains if (d := g.by_kind.get(kind)) is not None]
        mean, sd = spread(values) if values else (None, None)
        mean_row.append("-" if mean is None else f"{100 * mean:+.1f}")
        sd_row.append("-" if sd is None else f"{100 * sd:.1f}")
    return SummaryTable(
        caption=(
            f"{title} against the warm start, seed by seed ({len(gains)} RL seeds from the same warm start and data): "
            "paired differences in accuracy (points) over the same questions with paired-bootstrap 95 % intervals, "
            "overall and by question kind (RL − warm start). Mean of seeds: the seeds' mean accuracy per question "
            "against the warm start, with the interval from the questions (by kind: the mean of the seeds' "
            "differences); sd: how far the seeds' gains spread (sample sd)."
        ),
        headers=["seed", "questions", "RL − warm start [95 % CI]", *(f"{kind} Δ" for kind in kinds)],
        rows=[*rows, mean_row, sd_row],
    )
