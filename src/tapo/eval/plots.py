"""PNG plots for reports: training curves, RL over steps, tool-call distributions and calls by question kind,
accuracy against number of searches.

Figures are built with matplotlib's object API (``Figure``, Agg canvas): no display, no pyplot global
state. Training-curve panels pick metric keys by name pattern rather than by an exact list, so they keep
working as the trainer adds or renames keys; a panel with no matching key is left out, and a file with no
plottable key gives no figure at all. A key ``K`` logged with ``K_ci_lo``/``K_ci_hi`` (its 95 % interval) is
drawn with that interval as a band. Every plot says what it counts (trajectories, questions, prompts).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tapo.eval.metrics import OVERALL, SourceMetrics
from tapo.io.atomic import write_bytes
from tapo.stats import Interval

# Panel title -> key pattern; a key lands in the first panel whose pattern it matches. The trainer logs
# keys like reward/mean, reward/acc, tools/search_per_traj, response/model_tokens, sampling/filtered_frac.
CURVE_PANELS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("guidance: groups with no success, experts injected", re.compile(r"^guidance/", re.I)),
    ("filtered-group fraction", re.compile(r"filter|constant_group|kept", re.I)),
    ("informative share of sampled trajectories", re.compile(r"informative_frac", re.I)),
    ("prompt skipping (share skipped, exploration)", re.compile(r"skipped_frac|explore_all", re.I)),
    ("accuracy", re.compile(r"(^|[/_.])acc(uracy)?($|[/_.])", re.I)),
    ("format-error rate", re.compile(r"format", re.I)),
    ("reward", re.compile(r"reward|score", re.I)),
    ("tool calls per trajectory", re.compile(r"per_traj|calls", re.I)),
    ("tool failure rate", re.compile(r"fail", re.I)),
    ("response length (tokens)", re.compile(r"model_tokens|total_tokens|response_len|(^|[/_])len(gth)?$", re.I)),
    ("loss", re.compile(r"loss(?!_tokens)", re.I)),
)
SKIPPED_PREFIXES = ("time/", "perf/")
MAX_LINES_PER_PANEL = 6
STEP_KEYS = ("step", "global_step", "iteration")
CI_LO, CI_HI = "_ci_lo", "_ci_hi"
# Over RL steps: (panel title, keys in order of preference). ``sampled/*`` (every group the step sampled, with a
# 95 % interval over its prompts) is logged by current trainers; older runs only have the batch means.
RL_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("accuracy per question", ("sampled/acc", "reward/acc")),
    ("tool calls per question", ("sampled/calls_per_question", "tools/calls_per_traj")),
)
# A share with no interval (a count over the step's trajectories, not an estimate over prompts), drawn below the
# panels above when a run logged it: older runs did not.
INFORMATIVE_PANEL = ("sampled trajectories in informative groups (share)", "sampling/informative_frac")


def _save(fig: Figure, out: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    write_bytes(out, buffer.getvalue())
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def curve_panels(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Which numeric metric keys go in which panel (empty panels omitted)."""
    keys: list[str] = []
    for row in rows:
        keys.extend(
            k
            for k, v in row.items()
            if k not in keys
            and k not in STEP_KEYS
            and not k.startswith(SKIPPED_PREFIXES)
            and not k.endswith((CI_LO, CI_HI))
            and _is_number(v)
        )
    panels: dict[str, list[str]] = {}
    for key in keys:
        for title, pattern in CURVE_PANELS:
            if pattern.search(key):
                panels.setdefault(title, []).append(key)
                break
    return {title: sorted(found)[:MAX_LINES_PER_PANEL] for title, found in panels.items()}


def _step_key(rows: Sequence[Mapping[str, Any]]) -> str | None:
    return next((k for k in STEP_KEYS if any(k in r for r in rows)), None)


def _line(ax: Any, rows: Sequence[Mapping[str, Any]], step_key: str | None, key: str, label: str) -> bool:
    """Plot ``key`` against the step, with its logged 95 % band when there is one; True when a band was drawn."""
    points = [
        (row.get(step_key, i) if step_key else i, row[key], row.get(key + CI_LO), row.get(key + CI_HI))
        for i, row in enumerate(rows)
        if _is_number(row.get(key))
    ]
    xs, ys, lows, highs = zip(*points, strict=True)
    (line,) = ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=3, label=label)
    banded = all(_is_number(v) for v in (*lows, *highs))
    if banded:
        ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.2, linewidth=0)
    return banded


def plot_training_curves(rows: Sequence[Mapping[str, Any]], out: Path) -> Path | None:
    """One panel per metric family, x = the step (or the row number when rows carry no step)."""
    panels = curve_panels(rows)
    if not panels:
        return None
    step_key = _step_key(rows)
    fig = Figure(figsize=(8, 2.6 * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)
    for ax, (title, keys) in zip(axes[:, 0], panels.items(), strict=True):
        for key in keys:
            _line(ax, rows, step_key, key, key)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel(step_key or "row")
    return _save(fig, out)


def distinct_slices(metrics: Mapping[str, SourceMetrics]) -> dict[str, SourceMetrics]:
    """The slices worth a bar each: with a single data source, ``overall`` is the same data and is left out."""
    if len(metrics) == 2 and OVERALL in metrics:
        return {name: m for name, m in metrics.items() if name != OVERALL}
    return dict(metrics)


def plot_tool_call_distribution(metrics: Mapping[str, SourceMetrics], out: Path) -> Path | None:
    """Per tool, the share of trajectories making 0, 1, 2, ... calls, one bar group per data source."""
    metrics = distinct_slices(metrics)
    if not metrics:
        return None
    tools = list(next(iter(metrics.values())).tool_calls_mean)
    fig = Figure(figsize=(5 * len(tools), 3.8), layout="constrained")
    axes = fig.subplots(1, len(tools), squeeze=False)
    width = 0.8 / len(metrics)
    for ax, tool in zip(axes[0], tools, strict=True):
        top = max((max(m.tool_calls_distribution[tool], default=0) for m in metrics.values()), default=0)
        for i, (source, m) in enumerate(metrics.items()):
            hist = m.tool_calls_distribution[tool]
            shares = [hist.get(n, 0) / m.samples for n in range(top + 1)]
            label = f"{source} ({m.samples} trajectories, {m.questions} questions)"
            ax.bar([n + i * width - 0.4 + width / 2 for n in range(top + 1)], shares, width=width, label=label)
        ax.set_xticks(range(top + 1))
        ax.set_xlabel(f"{tool} calls per trajectory")
        ax.set_ylabel("share of trajectories")
        ax.set_ylim(0, 1)
        ax.set_title(tool)
        ax.legend(fontsize=7)
    fig.suptitle("tool calls per trajectory: every trajectory of the evaluation")
    return _save(fig, out)


def plot_rl_steps(runs: Mapping[str, Sequence[Mapping[str, Any]]], out: Path) -> tuple[Path | None, bool, bool]:
    """Accuracy and tool calls per question at each RL step, one line per run, each with its 95 % band, and the
    share of sampled trajectories in informative groups when a run logged it.

    Returns the PNG (None when no run logged either quantity), whether every accuracy and calls line had its
    interval, and whether the informative share was drawn.
    """
    drawn = {
        name: rows for name, rows in runs.items() if any(k in r for r in rows for _, keys in RL_PANELS for k in keys)
    }
    if not drawn:
        return None, False, False
    informative = {
        name: rows for name, rows in drawn.items() if any(_is_number(r.get(INFORMATIVE_PANEL[1])) for r in rows)
    }
    fig = Figure(figsize=(8, 9 if informative else 6))
    axes = fig.subplots(3 if informative else 2, 1, squeeze=False, sharex=True)
    all_banded = True
    if informative:
        title, key = INFORMATIVE_PANEL
        for name, rows in informative.items():
            _line(axes[2, 0], rows, _step_key(rows), key, name)
        axes[2, 0].set_title(title)
        axes[2, 0].set_ylim(-0.02, 1.02)
        axes[2, 0].grid(alpha=0.3)
        axes[2, 0].legend(fontsize=7, loc="best")
    for ax, (title, keys) in zip(axes[:2, 0], RL_PANELS, strict=True):
        for name, rows in drawn.items():
            key = next((k for k in keys if any(_is_number(r.get(k)) for r in rows)), None)
            if key is not None:
                banded = _line(ax, rows, _step_key(rows), key, name if key == keys[0] else f"{name} (batch mean)")
                all_banded = all_banded and banded
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="best")
    axes[0, 0].set_ylim(-0.02, 1.02)
    axes[-1, 0].set_xlabel("RL step")
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle("training prompts sampled at each step (band: 95 % interval over the step's prompts)", fontsize=9)
    return _save(fig, out), all_banded, bool(informative)


def plot_calls_by_kind(data: Mapping[str, Mapping[str, Interval]], out: Path) -> Path | None:
    """Mean tool calls per question by question kind, one bar per model, with 95 % interval error bars."""
    kinds = sorted({kind for by_kind in data.values() for kind in by_kind})
    if not kinds:
        return None
    counts = {kind: max(by_kind[kind].n for by_kind in data.values() if kind in by_kind) for kind in kinds}
    fig = Figure(figsize=(max(6, 1.6 * len(kinds) * max(1, len(data) / 3)), 3.8))
    ax = fig.subplots()
    width = 0.8 / len(data)
    for i, (model, by_kind) in enumerate(data.items()):
        xs = [k + i * width - 0.4 + width / 2 for k, kind in enumerate(kinds) if kind in by_kind]
        cells = [by_kind[kind] for kind in kinds if kind in by_kind]
        errors = [[c.estimate - c.low for c in cells], [c.high - c.estimate for c in cells]]
        ax.bar(xs, [c.estimate for c in cells], width=width, yerr=errors, capsize=2, label=model)
    ax.set_xticks(range(len(kinds)))
    ax.set_xticklabels([f"{kind}\n(n={counts[kind]})" for kind in kinds], fontsize=8)
    ax.set_ylabel("tool calls per question")
    ax.set_title("tool calls per question by question kind (error bars: 95 % interval over questions)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out)


def plot_accuracy_by_searches(
    buckets: Mapping[int, tuple[float, int]], out: Path, what: str = "every trajectory of the evaluation"
) -> Path | None:
    """Accuracy of samples grouped by how many searches they made, with each bucket's sample count; ``what``
    says which trajectories the buckets hold (all of an evaluation, or the ones a trainer logged)."""
    if not buckets:
        return None
    xs = list(buckets)
    accs = [buckets[n][0] for n in xs]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    bars = ax.bar(xs, accs, color="#4c72b0")
    for bar, n in zip(bars, xs, strict=True):
        ax.annotate(
            f"n={buckets[n][1]}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom"
        )
    ax.set_xticks(xs)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("searches in the trajectory")
    ax.set_ylabel("accuracy")
    ax.set_title(f"accuracy against number of searches: {what}", fontsize=9)
    return _save(fig, out)
