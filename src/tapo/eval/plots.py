"""PNG plots for reports: training curves, tool-call distributions, accuracy against number of searches.

Figures are built with matplotlib's object API (``Figure``, Agg canvas): no display, no pyplot global
state. Training-curve panels pick metric keys by name pattern rather than by an exact list, so they keep
working as the trainer adds or renames keys; a panel with no matching key is left out, and a file with no
plottable key gives no figure at all.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from tapo.eval.metrics import SourceMetrics
from tapo.io.atomic import write_bytes

# Panel title -> key pattern; a key lands in the first panel whose pattern it matches. The trainer logs
# keys like reward/mean, reward/acc, tools/search_per_traj, response/model_tokens, sampling/filtered_frac.
CURVE_PANELS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("filtered-group fraction", re.compile(r"filter|constant_group|kept", re.I)),
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
            if k not in keys and k not in STEP_KEYS and not k.startswith(SKIPPED_PREFIXES) and _is_number(v)
        )
    panels: dict[str, list[str]] = {}
    for key in keys:
        for title, pattern in CURVE_PANELS:
            if pattern.search(key):
                panels.setdefault(title, []).append(key)
                break
    return {title: sorted(found)[:MAX_LINES_PER_PANEL] for title, found in panels.items()}


def plot_training_curves(rows: Sequence[Mapping[str, Any]], out: Path) -> Path | None:
    """One panel per metric family, x = the step (or the row number when rows carry no step)."""
    panels = curve_panels(rows)
    if not panels:
        return None
    step_key = next((k for k in STEP_KEYS if any(k in r for r in rows)), None)
    fig = Figure(figsize=(8, 2.6 * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)
    for ax, (title, keys) in zip(axes[:, 0], panels.items(), strict=True):
        for key in keys:
            points = [
                (row.get(step_key, i) if step_key else i, row[key])
                for i, row in enumerate(rows)
                if _is_number(row.get(key))
            ]
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=3, label=key)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel(step_key or "row")
    return _save(fig, out)


def plot_tool_call_distribution(metrics: Mapping[str, SourceMetrics], out: Path) -> Path | None:
    """Per tool, the share of trajectories making 0, 1, 2, ... calls, one bar group per data source."""
    if not metrics:
        return None
    tools = list(next(iter(metrics.values())).tool_calls_distribution)
    fig = Figure(figsize=(5 * len(tools), 3.5))
    axes = fig.subplots(1, len(tools), squeeze=False)
    width = 0.8 / len(metrics)
    for ax, tool in zip(axes[0], tools, strict=True):
        top = max((max(m.tool_calls_distribution[tool], default=0) for m in metrics.values()), default=0)
        for i, (source, m) in enumerate(metrics.items()):
            hist = m.tool_calls_distribution[tool]
            shares = [hist.get(n, 0) / m.samples for n in range(top + 1)]
            ax.bar([n + i * width - 0.4 + width / 2 for n in range(top + 1)], shares, width=width, label=source)
        ax.set_xticks(range(top + 1))
        ax.set_xlabel(f"{tool} calls per trajectory")
        ax.set_ylabel("share of trajectories")
        ax.set_ylim(0, 1)
        ax.set_title(tool)
        ax.legend(fontsize=7)
    return _save(fig, out)


def plot_accuracy_by_searches(buckets: Mapping[int, tuple[float, int]], out: Path) -> Path | None:
    """Accuracy of samples grouped by how many searches they made, with each bucket's sample count."""
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
    ax.set_title("accuracy against number of searches")
    return _save(fig, out)
