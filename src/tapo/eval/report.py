"""A self-contained HTML report for a training run directory or an evaluation output directory.

It gathers what it finds: the main job's results (``summary.json``), training curves (``metrics.jsonl``) and
accuracy and tool calls per question over RL steps, evaluations (any ``results.json`` in the directory, its
sub-directories, or ``eval/*`` and ``eval/*/*``), tool calls by question kind, an ablation table
(``ablation.json``), and sampled trajectories. Directories are named as the results table names them (the
``labels`` of ``summary.json``: "TAPO (RL on the warm start)", not ``eval/tapo``), and every sampled trajectory
says which model wrote it at which stage. A trajectory is drawn from its typed turns: what the model wrote, then
what the environment inserted (a tool's output, or the corrective message after a turn with no valid action),
so environment text is never mistaken for a tool call.

PNGs are written next to the HTML (``report/*.png``) and also embedded as base64, so the HTML file alone is the
whole report. No JavaScript: nothing to fail in the browser. Every string from a model, a dataset or a tool is
HTML-escaped.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tapo.eval.job_summary import JobSummary
from tapo.eval.metrics import accuracy_by_searches, calls_by_kind
from tapo.eval.plots import (
    plot_accuracy_by_searches,
    plot_calls_by_kind,
    plot_rl_steps,
    plot_tool_call_distribution,
    plot_training_curves,
)
from tapo.eval.render import esc, render_trajectory
from tapo.eval.result_dir import (
    ABLATION_FILE,
    RESULTS_FILE,
    EvalResult,
    ablation_table,
    load_result,
    load_stepped_trajectories,
)
from tapo.eval.samples import to_records
from tapo.eval.tables import ACC_NOTE, ADAPTIVE_HEADERS, adaptive_table, metric_table, to_html
from tapo.io.atomic import read_jsonl, write_text
from tapo.records import Trajectory
from tapo.stats import Verdict

# (training step or None, trajectory): what the sampled-trajectories section shows
Stepped = tuple[int | None, Trajectory]

REPORT_FILE = "report.html"
# a goal's verdict -> CSS class of its badge
VERDICT_CLASS = {v: v.name.lower().replace("_", "-") for v in Verdict}

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #1f2328; background: #ffffff; padding: 0 1rem; }
h1 { border-bottom: 3px solid #4c72b0; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .85rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .55rem; text-align: right; }
td { white-space: nowrap; } td:first-child { white-space: normal; }
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
.corrective { background: #ffebe9; border-left: 3px solid #cf222e; font-style: italic; }
.corrective .label { color: #cf222e; font-style: normal; }
.who { display: inline-block; background: #4c72b0; color: #fff; border-radius: 4px; padding: 0 .4rem;
       font-size: .8rem; }
caption { caption-side: top; text-align: left; color: #57606a; font-size: .85rem; padding: .3rem 0; }
.caption { color: #57606a; font-size: .85rem; }
.verdict { display: inline-block; min-width: 7.5rem; border-radius: 4px; padding: 0 .4rem; margin-right: .4rem;
           font-size: .8rem; font-weight: 700; text-align: center; color: #fff; }
.verdict.met { background: #1a7f37; } .verdict.not-met { background: #cf222e; }
.verdict.noise { background: #9a6700; } .verdict.unmeasured { background: #6e7781; }
"""


@dataclass
class _Section:
    title: str
    body: str


@dataclass(frozen=True)
class _Source:
    """Where sampled trajectories come from: which model, at which stage, and the rows themselves."""

    model: str
    stage: str
    rows: list[Stepped]


def sample_rows(rows: Sequence[Stepped], n: int, seed: int = 0) -> list[Stepped]:
    """Up to ``n`` trajectories, half right and half wrong where possible, so a report shows both kinds."""
    rng = random.Random(seed)
    right = [r for r in rows if r[1].scored.acc]
    wrong = [r for r in rows if not r[1].scored.acc]
    take_right = min(len(right), max(n - len(wrong), n // 2))
    chosen = rng.sample(right, take_right) + rng.sample(wrong, min(len(wrong), n - take_right))
    return chosen


def _image(path: Path | None, out_dir: Path, alt: str, caption: str = "") -> str:
    if path is None:
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    note = f'<p class="caption">{esc(caption)}</p>' if caption else ""
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}" title="{esc(path.relative_to(out_dir))}">{note}'


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


def _relative(path: Path, root: Path) -> str:
    return "." if path == root else path.relative_to(root).as_posix()


class _Names:
    """The name of each directory of the run: the results table's (``summary.json`` labels), else its path."""

    def __init__(self, root: Path, labels: dict[str, str]) -> None:
        self.root, self.labels = root, labels

    def __call__(self, path: Path, fallback: str = "") -> str:
        relative = _relative(path, self.root)
        return self.labels.get(relative) or fallback or relative

    def titled(self, path: Path) -> str:
        """``TAPO (RL on the warm start) (eval/tapo)``: the name and, when it differs, where it lives."""
        relative = _relative(path, self.root)
        name = self(path)
        return name if name == relative else f"{name} ({relative})"


def _eval_section(result: EvalResult, names: _Names, out_dir: Path, index: int) -> _Section:
    assert result.out_dir is not None
    slug = f"eval{index}"
    headers, rows = metric_table(result.metrics)
    overall = result.overall
    caption = (
        f"{overall.questions} questions of {result.data}, K={result.samples} "
        f"({'greedy' if result.greedy else 'sampled'}), {overall.samples} trajectories. {ACC_NOTE}."
    )
    parts = [
        f'<p class="meta">model {esc(result.model)} · data {esc(result.data)} · tools {esc(result.tools_mode)} '
        f"(template {esc(result.template)}) · K={result.samples} · {'greedy' if result.greedy else 'sampled'}</p>",
        to_html(headers, rows, caption),
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
            "accuracy against searches",
        )
    )
    return _Section(f"Evaluation: {names.titled(result.out_dir)}", "".join(parts))


def _summary_section(summary: JobSummary | None) -> list[_Section]:
    """The main job's results (``summary.json``: title, tables with captions, goals, notes), shown first."""
    if summary is None:
        return []
    tables = "".join(to_html(t.headers, t.rows, t.caption) for t in summary.tables)
    goals = "".join(
        f'<li><span class="verdict {VERDICT_CLASS[g.verdict]}">{esc(g.verdict.value)}</span>'
        f"{esc(g.goal)}: {esc(g.measured)}</li>"
        for g in summary.goals
    )
    notes = "".join(f"<li>{esc(note)}</li>" for note in summary.notes)
    body = tables + (f"<h3>Goals</h3><ul>{goals}</ul>" if goals else "") + (f"<ul>{notes}</ul>" if notes else "")
    return [_Section(summary.title, body)]


def _training_runs(root: Path) -> list[Path]:
    """``root`` and every run directory directly under it (a pipeline's stages) that logged metrics."""
    return [run for run in (root, *sorted(p.parent for p in root.glob("*/metrics.jsonl"))) if run.is_dir()]


def _training_sections(root: Path, out_dir: Path, names: _Names) -> list[_Section]:
    return [s for run in _training_runs(root) for s in _run_sections(run, root, out_dir, names)]


def _run_sections(root: Path, top: Path, out_dir: Path, names: _Names) -> list[_Section]:
    sections: list[_Section] = []
    name = "" if root == top else f": {names.titled(root)}"
    prefix = "" if root == top else f"{root.name}_"
    metrics_file = root / "metrics.jsonl"
    rows = read_jsonl(metrics_file) if metrics_file.is_file() else []
    if rows:
        last = rows[-1]
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
            trained = sum(int(r.get("batch/trajectories", 0)) for r in rows)
            of = f" of the {trained} trained on" if trained else ""
            what = f"the {len(scored)} trajectories the trainer logged{of}"
            buckets = accuracy_by_searches(to_records(t for _, t in scored))
            plot = plot_accuracy_by_searches(buckets, out_dir / f"{prefix}train_acc_by_searches.png", what)
            caption = f"A sample: {what} (trainer.log_trajectories per step)."
            sections.append(
                _Section(
                    f"Training trajectories{name}: accuracy against searches", _image(plot, out_dir, "acc", caption)
                )
            )
    return sections


def _rl_steps_section(root: Path, out_dir: Path, names: _Names) -> list[_Section]:
    """Accuracy and tool calls per question over RL steps, every RL run of the directory on one figure."""
    files = [run / "metrics.jsonl" for run in _training_runs(root)]
    logged = {path.parent: read_jsonl(path) for path in files if path.is_file()}
    runs = {names(run): rows for run, rows in logged.items() if any("reward/acc" in r for r in rows)}
    plot, banded, informative = plot_rl_steps(runs, out_dir / "rl_steps.png")
    if plot is None:
        return []
    caption = (
        "At each RL step, every group the step sampled (training prompts x group size, before the dynamic-sampling "
        "filter): accuracy and tool calls per question, averaged over a prompt's answers first, with the 95 % "
        "interval over the step's prompts as a band. These are training prompts seen once, not the held-out test "
        "split of the results table."
    )
    if informative:
        caption += (
            " The last panel is the share of the step's sampled trajectories in informative groups (a prompt's "
            "answers neither all right nor all wrong): the rollouts that bought gradient."
        )
    if not banded:
        caption += " Lines marked 'batch mean' have no logged interval (older trainer): the trained batch's mean."
    return [_Section("RL over steps: accuracy and tool calls per question", _image(plot, out_dir, "RL steps", caption))]


def _kinds_section(results: Sequence[EvalResult], out_dir: Path, names: _Names) -> list[_Section]:
    """Tool calls per question by question kind, one bar per evaluated model (TAPO-mini rows carry ``meta.kind``)."""
    data = {}
    for result in results:
        assert result.out_dir is not None
        by_kind = calls_by_kind(to_records(t for _, t in _scored(load_stepped_trajectories(result.out_dir))))
        if by_kind:
            data[names(result.out_dir)] = by_kind
    plot = plot_calls_by_kind(data, out_dir / "calls_by_kind.png")
    if plot is None:
        return []
    caption = "Every question of each evaluation; n = questions of the kind; error bars: 95 % bootstrap interval."
    return [_Section("Tool calls by question kind", _image(plot, out_dir, "calls by kind", caption))]


def _trajectory_sources(root: Path, evals: Sequence[Path], names: _Names) -> list[_Source]:
    """Evaluations (which model, on what) and training runs (RL steps), each named as the results table names it."""
    sources = []
    for path in [root, *[e for e in evals if e != root]]:
        rows = _scored(load_stepped_trajectories(path))
        if rows and (path / RESULTS_FILE).is_file():
            result = load_result(path)
            stage = f"evaluation on {Path(result.data).name}, tools: {result.tools_mode}"
            sources.append(_Source(names(path, result.model), stage, rows))
        elif rows:
            sources.append(_Source(names(path), "trajectories", rows))
    for run in _training_runs(root)[1:]:
        rows = _scored(load_stepped_trajectories(run))
        if rows and not (run / RESULTS_FILE).is_file():
            sources.append(_Source(names(run), "RL training", rows))
    return sources


def _trajectory_section(root: Path, evals: Sequence[Path], names: _Names, n: int, seed: int) -> _Section | None:
    """``n`` trajectories shared evenly over the sources (the first ones get the remainder)."""
    sources = _trajectory_sources(root, evals, names)
    if not sources or n == 0:
        return None
    parts, shown = [], 0
    for i, source in enumerate(sources):
        picked = sample_rows(source.rows, n // len(sources) + (i < n % len(sources)), seed)
        if not picked:
            continue
        shown += len(picked)
        parts.append(
            f"<h3>{esc(source.model)}: {esc(source.stage)} ({len(picked)} of {len(source.rows)} trajectories)</h3>"
            + "".join(render_trajectory(step, t, source.model, source.stage) for step, t in picked)
        )
    total = sum(len(s.rows) for s in sources)
    intro = (
        f'<p class="caption">{shown} of {total} trajectories, shared over the models and stages, half right and '
        "half wrong where possible. Model text is split into its tagged blocks; what the environment inserted (a "
        "tool's output, the corrective message after a turn without a valid action) is shown as such.</p>"
    )
    return _Section(f"Sampled trajectories ({shown} of {total})", intro + "".join(parts))


def build_report(root: Path, out_dir: Path | None = None, n_trajectories: int = 12, seed: int = 0) -> Path:
    """Write ``report.html`` (and its PNGs) for a run or evaluation dir; returns the HTML path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    out_dir = Path(out_dir) if out_dir else root / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = JobSummary.load(root)
    names = _Names(root, summary.labels if summary else {})
    sections = [
        *_summary_section(summary),
        *_rl_steps_section(root, out_dir, names),
        *_training_sections(root, out_dir, names),
    ]
    evals = find_evaluations(root)
    for path in find_ablations(root):
        modes = [load_result(path / mode) for mode in json.loads((path / ABLATION_FILE).read_text())["modes"]]
        headers, rows = ablation_table(modes)
        sections.append(_Section(f"Tool ablation: {names.titled(path)}", to_html(headers, rows, ACC_NOTE)))
    results = [load_result(path) for path in evals]
    sections += [_eval_section(result, names, out_dir, i) for i, result in enumerate(results)]
    sections += _kinds_section(results, out_dir, names)
    trajectories = _trajectory_section(root, evals, names, n_trajectories, seed)
    if trajectories:
        sections.append(trajectories)
    if not sections:
        raise FileNotFoundError(
            f"{root} has nothing to report: no metrics.jsonl, trajectories.jsonl or {RESULTS_FILE} (also under eval/*)"
        )
    body = "".join(f"<h2>{esc(s.title)}</h2>{s.body}" for s in sections)
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>TAPO report: {esc(root.name)}</title>'
        f'<link rel="icon" href="data:,"><style>{CSS}</style></head>'
        f"<body><h1>TAPO report: {esc(root.resolve().name)}</h1>{body}</body></html>\n"
    )
    target = out_dir / REPORT_FILE
    write_text(target, page)
    return target
