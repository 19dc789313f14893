"""Metric tables as plain rows, rendered three ways (markdown file, rich terminal table, HTML report).

One row builder feeds all three renderers so the columns never drift apart between them. Accuracy is shown with
its 95 % interval over the row's questions (``acc % [95 % CI]``, see :mod:`tapo.stats`), and tables may carry
a caption saying what they measure.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from rich import box
from rich.table import Table

from tapo.eval.metrics import SourceMetrics

ACC_NOTE = (
    "acc: mean accuracy over the questions with its 95 % interval (Wilson score interval for a share of "
    "questions, seeded bootstrap over questions when K > 1; docs/evaluation.md)"
)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def metric_headers(tools: Sequence[str], label: str = "source") -> list[str]:
    return [
        label,
        "questions",
        "K",
        "acc % [95 % CI]",
        "pass@K %",
        "score",
        "format err %",
        *(f"{t} calls/q" for t in tools),
        *(f"uses {t} %" for t in tools),
        "tool fail %",
        "model tokens",
    ]


def metric_row(label: str, m: SourceMetrics, tools: Sequence[str]) -> list[str]:
    return [
        label,
        str(m.questions),
        str(m.k),
        m.acc_interval.pct() if m.acc_interval else _pct(m.acc),
        _pct(m.pass_at_k),
        f"{m.mean_score:.3f}",
        _pct(m.format_error_rate),
        *(f"{m.tool_calls_mean.get(t, 0.0):.2f}" for t in tools),
        *(_pct(m.tool_use_share.get(t, 0.0)) for t in tools),
        _pct(m.tool_failure_rate),
        f"{m.model_tokens_mean:.1f}",
    ]


def metric_table(metrics: Mapping[str, SourceMetrics], label: str = "source") -> tuple[list[str], list[list[str]]]:
    """Headers and rows for labelled metrics (data sources of one run, or tool modes of an ablation)."""
    tools = list(next(iter(metrics.values())).tool_calls_mean) if metrics else []
    return metric_headers(tools, label), [metric_row(name, m, tools) for name, m in metrics.items()]


ADAPTIVE_HEADERS = ["source", "need tools", "no need", "call rate | need %", "call rate | no need %", "all needed %"]


def adaptive_table(metrics: Mapping[str, SourceMetrics]) -> list[list[str]]:
    """Rows of adaptive tool use for the slices where ``meta.needs`` is known (empty when none)."""
    return [
        [
            name,
            str(a.questions_needing_tools),
            str(a.questions_without_need),
            _pct(a.call_rate_when_needed),
            _pct(a.call_rate_when_not_needed),
            _pct(a.needed_tools_rate),
        ]
        for name, m in metrics.items()
        if (a := m.adaptive) is not None
    ]


def to_markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), "| " + " | ".join("---" for _ in headers) + " |", *map(line, rows)]) + "\n"


def to_rich(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> Table:
    """A table that fits the console: narrow columns fold their text onto more lines instead of cutting it."""
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 0, 0, 1), pad_edge=False)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right", overflow="fold", no_wrap=i == 0)
    for row in rows:
        table.add_row(*row)
    return table


def to_html(headers: Sequence[str], rows: Sequence[Sequence[str]], caption: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
