"""A self-contained HTML report for a training run directory or an evaluation output directory.

It gathers what it finds: training curves (``metrics.jsonl``), evaluations (any ``results.json`` in the
directory, its sub-directories, or ``eval/*`` and ``eval/*/*``), an ablation table (``ablation.json``), and
sampled trajectories. PNGs are written next to the HTML (``report/*.png``) and also embedded as base64, so
the HTML file alone is the whole report. No JavaScript: nothing to fail in the browser. Every string from
a model, a dataset or a tool is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tapo.eval.metrics import accuracy_by_searches
from tapo.eval.plots import plot_accuracy_by_searches, plot_tool_call_distribution, plot_training_curves
from tapo.eval.records import to_records
from tapo.eval.results import (
    ABLATION_FILE,
    RESULTS_FILE,
    EvalResult,
    ablation_table,
    load_result,
    load_stepped_trajectories,
)
from tapo.eval.tables import ADAPTIVE_HEADERS, adaptive_table, metric_table, to_html
from tapo.io.atomic import read_jsonl, write_text
from tapo.protocol import Segment, label, segments
from tapo.records import Trajectory

# (training step or None, trajectory): what the sampled-trajectories section shows
Stepped = tuple[int | None, Trajectory]

REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.json"

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #1f2328; background: #ffffff; padding: 0 1rem; }
h1 { border-bottom: 3px solid #4c72b0; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .85rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .55rem; text-align: right; }
th { background: #f0f3f6; } td:first-child, th:first-child { text-align: left; font-weight: 600; }
img { max-width: 100%; border: 1px solid #d0d7de; margin: .5rem 0; }
.meta { color: #57606a; font-size: .9rem; }
.traj { border: 1px solid #d0d7de; border-radius: 6px; margin: 1rem 0; padding: .6rem .9rem; }
.traj.ok { border-left: 6px solid #2da44e; } .traj.bad { border-left: 6px solid #cf222e; }
.seg { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: .8rem; margin: .3rem 0;
       padding: .35rem .5rem; border-radius: 4px; }
.seg { background: #f6f8fa; }
.seg .label { display: block; font-weight: 700; font-family: system-ui, sans-serif; font-size: .7rem;
              text-transform: uppercase; letter-spacing: .05em; }
.think { color: #57606a; }
.search { background: #ddf4ff; } .search .label { color: #0969da; }
.code { background: #fff8c5; } .code .label { color: #9a6700; }
.response { background: #f3f0ff; border-left: 3px solid #8250df; } .response .label { color: #8250df; }
.answer { background: #dafbe1; font-weight: 700; } .answer .label { color: #1a7f37; }
.text { background: #fff; border: 1px dashed #d0d7de; } .text .label { color: #57606a; }
"""


@dataclass
class _Section:
    title: str
    body: str


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def render_segment(segment: Segment) -> str:
    """One block of a response, labelled by what it is (untagged text is marked as such)."""
    kind = segment.tag or "text"
    title = label(segment.tag) if segment.tag else "untagged text"
    return f'<div class="seg {kind}"><span class="label">{_esc(title)}</span>{_esc(segment.text)}</div>'


def render_trajectory(step: int | None, trajectory: Trajectory) -> str:
    """A scored trajectory: question, golds, reward and how it ended, then its blocks in order."""
    example, reward = trajectory.example, trajectory.scored
    info = [
        f"source: {example.data_source if example else '?'}",
        f"gold: {', '.join(example.golds) if example else '?'}",
        f"predicted: {reward.answer}",
        f"score: {reward.score}",
        f"format ok: {reward.format_ok}",
        f"finish: {trajectory.finish_reason or '?'}",
        f"model tokens: {trajectory.n_model_tokens}",
    ]
    if step is not None:
        info.insert(0, f"step: {step}")
    blocks = "".join(render_segment(s) for s in segments(trajectory.response_text, unclosed=False))
    return (
        f'<div class="traj {"ok" if reward.acc else "bad"}"><p><b>Q:</b> {_esc(example.question if example else "")}'
        f'</p><p class="meta">{_esc(" · ".join(info))}</p>{blocks}</div>'
    )


def sample_rows(rows: Sequence[Stepped], n: int, seed: int = 0) -> list[Stepped]:
    """Up to ``n`` trajectories, half right and half wrong where possible, so a report shows both kinds."""
    rng = random.Random(seed)
    right = [r for r in rows if r[1].scored.acc]
    wrong = [r for r in rows if not r[1].scored.acc]
    take_right = min(len(right), max(n - len(wrong), n // 2))
    chosen = rng.sample(right, take_right) + rng.sample(wrong, min(len(wrong), n - take_right))
    return chosen


def _image(path: Path | None, out_dir: Path, alt: str) -> str:
    if path is None:
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_esc(alt)}" title="{_esc(path.relative_to(out_dir))}">'


def _scored(rows: Sequence[Stepped]) -> list[Stepped]:
    return [r for r in rows if r[1].reward is not None]


def find_evaluations(root: Path) -> list[Path]:
    """Evaluation dirs under ``root``: itself, its children (ablation modes), ``eval/*`` and ``eval/*/*``."""
    patterns = (RESULTS_FILE, f"*/{RESULTS_FILE}", f"eval/*/{RESULTS_FILE}", f"eval/*/*/{RESULTS_FILE}")
    found = {p.parent for pattern in patterns for p in root.glob(pattern)}
    return sorted(found)


def find_ablations(root: Path) -> list[Path]:
    patterns = (ABLATION_FILE, f"eval/*/{ABLATION_FILE}")
    return sorted({p.parent for pattern in patterns for p in root.glob(pattern)})


def _eval_section(result: EvalResult, root: Path, out_dir: Path, index: int) -> _Section:
    assert result.out_dir is not None
    slug = f"eval{index}"
    headers, rows = metric_table(result.metrics)
    parts = [
        f'<p class="meta">model {_esc(result.model)} · data {_esc(result.data)} · tools {_esc(result.tools_mode)} '
        f"(template {_esc(result.template)}) · K={result.samples} · {'greedy' if result.greedy else 'sampled'}</p>",
        to_html(headers, rows),
    ]
    adaptive = adaptive_table(result.metrics)
    if adaptive:
        parts += ["<h3>Adaptive tool use (by meta.needs)</h3>", to_html(ADAPTIVE_HEADERS, adaptive)]
    parts.append(
        _image(plot_tool_call_distribution(result.metrics, out_dir / f"{slug}_tool_calls.png"), out_dir, "tool calls")
    )
    parts.append(
        _image(
            plot_accuracy_by_searches(result.accuracy_by_searches, out_dir / f"{slug}_acc_by_searches.png"),
            out_dir,
            "acc",
        )
    )
    return _Section(
        f"Evaluation: {result.out_dir.relative_to(root) if result.out_dir != root else '.'}", "".join(parts)
    )


def _summary_section(root: Path) -> list[_Section]:
    """A ready-made summary table (``summary.json``: title, headers, rows, notes), e.g. the main job's results."""
    path = root / SUMMARY_FILE
    if not path.is_file():
        return []
    summary = json.loads(path.read_text(encoding="utf-8"))
    notes = "".join(f"<li>{_esc(note)}</li>" for note in summary.get("notes", []))
    body = to_html(summary["headers"], summary["rows"]) + (f"<ul>{notes}</ul>" if notes else "")
    return [_Section(summary.get("title", "Summary"), body)]


def _training_sections(root: Path, out_dir: Path) -> list[_Section]:
    """Training curves of ``root`` and of every run directory directly under it (a pipeline's stages)."""
    runs = [root, *sorted(p.parent for p in root.glob("*/metrics.jsonl"))]
    return [s for run in runs for s in _run_sections(run, root, out_dir)]


def _run_sections(root: Path, top: Path, out_dir: Path) -> list[_Section]:
    sections: list[_Section] = []
    name = "" if root == top else f": {root.name}"
    prefix = "" if root == top else f"{root.name}_"
    metrics_file = root / "metrics.jsonl"
    if metrics_file.is_file():
        rows = read_jsonl(metrics_file)
        last = rows[-1] if rows else {}
        table = [
            [k, f"{v:.4g}" if isinstance(v, float) else str(v)]
            for k, v in last.items()
            if not isinstance(v, dict | list)
        ]
        body = f"<p class='meta'>{len(rows)} logged steps</p>"
        curves = plot_training_curves(rows, out_dir / f"{prefix}training_curves.png")
        body += _image(curves, out_dir, "training curves")
        body += "<h3>Last logged step</h3>" + to_html(["metric", "value"], table)
        sections.append(_Section(f"Training{name}", body))
    if not (root / RESULTS_FILE).is_file():
        scored = _scored(load_stepped_trajectories(root))
        if scored:
            buckets = accuracy_by_searches(to_records(t for _, t in scored))
            plot = plot_accuracy_by_searches(buckets, out_dir / f"{prefix}train_acc_by_searches.png")
            sections.append(
                _Section(f"Training trajectories{name}: accuracy against searches", _image(plot, out_dir, "acc"))
            )
    return sections


def _trajectory_section(root: Path, evals: Sequence[Path], n: int, seed: int) -> _Section | None:
    sources = [root, *[e for e in evals if e != root]]
    rows = [row for src in sources for row in _scored(load_stepped_trajectories(src))]
    if not rows or n == 0:
        return None
    shown = sample_rows(rows, n, seed)
    blocks = "".join(render_trajectory(step, trajectory) for step, trajectory in shown)
    return _Section(f"Sampled trajectories ({len(shown)} of {len(rows)})", blocks)


def build_report(root: Path, out_dir: Path | None = None, n_trajectories: int = 12, seed: int = 0) -> Path:
    """Write ``report.html`` (and its PNGs) for a run or evaluation dir; returns the HTML path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    out_dir = Path(out_dir) if out_dir else root / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = [*_summary_section(root), *_training_sections(root, out_dir)]
    evals = find_evaluations(root)
    for path in find_ablations(root):
        modes = [load_result(path / mode) for mode in json.loads((path / ABLATION_FILE).read_text())["modes"]]
        headers, rows = ablation_table(modes)
        sections.append(
            _Section(f"Tool ablation: {path.relative_to(root) if path != root else '.'}", to_html(headers, rows))
        )
    sections += [_eval_section(load_result(path), root, out_dir, i) for i, path in enumerate(evals)]
    trajectories = _trajectory_section(root, evals, n_trajectories, seed)
    if trajectories:
        sections.append(trajectories)
    if not sections:
        raise FileNotFoundError(
            f"{root} has nothing to report: no metrics.jsonl, trajectories.jsonl or {RESULTS_FILE} (also under eval/*)"
        )
    body = "".join(f"<h2>{_esc(s.title)}</h2>{s.body}" for s in sections)
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>TAPO report: {_esc(root.name)}</title>'
        f'<link rel="icon" href="data:,"><style>{CSS}</style></head>'
        f"<body><h1>TAPO report: {_esc(root.resolve().name)}</h1>{body}</body></html>\n"
    )
    target = out_dir / REPORT_FILE
    write_text(target, page)
    return target
