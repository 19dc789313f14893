"""Show a trajectory as it grows: reasoning, tool calls, tool outputs and the answer each in their own style.

The rollout reports every piece it appends (a model turn or an environment insertion, see
``RolloutRunner(on_step=...)``); this module splits each piece at the protocol's tags and prints the
blocks with rich, so a reader tells at a glance what the model wrote and what the environment inserted.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from tapo.protocol import RESPONSE, TAPO, Protocol, Segment, label, segments
from tapo.records import Trajectory

# tag -> border style (a tool without an entry gets the default); text outside any tag is shown plain
STYLES = {"think": "magenta", "search": "yellow", "code": "blue", "response": "cyan", "answer": "bold green"}


def render_segment(segment: Segment, source: str) -> RenderableType:
    """A panel per tag; untagged model text dim, untagged environment text (the corrective message) red."""
    if segment.tag is None:
        if source == "environment":
            return Panel(Text(segment.text), title="environment", title_align="left", border_style="red")
        return Text(segment.text, style="dim")
    body: RenderableType = (
        Syntax(segment.text, "python", word_wrap=True) if segment.tag == "code" else Text(segment.text)
    )
    return Panel(body, title=label(segment.tag), title_align="left", border_style=STYLES.get(segment.tag, "white"))


def render_text(text: str, source: str, protocol: Protocol = TAPO) -> Group:
    """All blocks of one appended piece. The environment writes only <response> blocks; its corrective message
    quotes tags as plain words, so only ``response`` is a tag there."""
    tags = protocol.tags if source == "model" else (RESPONSE,)
    return Group(*(render_segment(s, source) for s in segments(text, tags)))


class TraceRenderer:
    """The ``on_step`` callback of a rollout that prints each piece to ``console`` as it arrives.

    Given the tokenizer, ``stream`` also shows a model turn while it is sampled (engines that stream tokens
    call it); the live view is replaced by the finished turn once the rollout reports it.
    """

    def __init__(self, console: Console, tokenizer: Any = None, protocol: Protocol = TAPO) -> None:
        self.console = console
        self.tokenizer = tokenizer
        self.protocol = protocol  # the session's tags: a user's tool gets its own panel
        self._live: Live | None = None
        self._streamed: list[int] = []

    def stream(self, ids: list[int]) -> None:
        self._streamed += ids
        view = render_text(self.tokenizer.decode(self._streamed, skip_special_tokens=True), "model", self.protocol)
        if self._live is None:
            self._live = Live(view, console=self.console, refresh_per_second=8, transient=True)
            self._live.start()
        else:
            self._live.update(view)

    def __call__(self, index: int, source: str, text: str) -> None:
        if self._live is not None:
            self._live.stop()
            self._live, self._streamed = None, []
        self.console.print(render_text(text, source, self.protocol))

    def summary(self, trajectory: Trajectory) -> None:
        """One line after the trace: why it ended, tool calls, model tokens."""
        calls = ", ".join(f"{tool} x{n}" for tool, n in sorted(trajectory.tool_calls.items())) or "none"
        self.console.print(
            f"[dim]finished: {trajectory.finish_reason} · tool calls: {calls} · "
            f"model tokens: {trajectory.n_model_tokens} · response tokens: {len(trajectory.response_ids)}[/]",
            highlight=False,
        )
