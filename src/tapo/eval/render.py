"""One trajectory as HTML, drawn from its typed turns: what the model wrote, then what the environment inserted.

The rollout appends, after each turn with an action, either a tool's output block (``format_observation`` of
``Turn.output``) or the corrective message (``Turn.output`` of an ``invalid`` turn). Those insertions are known
exactly, so the response text is split at them rather than re-parsed for tags: the corrective message quotes
``<search> and </search>`` as words, and re-parsing would draw it as a search call of "and". The model's own
text is split into its tagged blocks. Every string is HTML-escaped.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tapo.protocol import INVALID, RESPONSE, Protocol, Segment, is_tool_action, label, segments
from tapo.records import Trajectory, Turn


def esc(value: Any) -> str:
    """``value`` as HTML text (quotes escaped too: safe in attributes)."""
    return html.escape(str(value), quote=True)


def _block(kind: str, title: str, text: str) -> str:
    return f'<div class="seg {kind}"><span class="label">{esc(title)}</span>{esc(text)}</div>'


def render_segment(segment: Segment) -> str:
    """One block the model wrote, labelled by what it is (untagged text is marked as such).

    A ``<response>`` block in the model's own text is not a tool's output: it is labelled as written by the model.
    """
    if segment.tag is None:
        return _block("text", "untagged text", segment.text)
    title = "response written by the model (not a tool output)" if segment.tag == RESPONSE else label(segment.tag)
    return _block(segment.tag, title, segment.text)


def _inserted(turn: Turn, protocol: Protocol) -> str:
    """What the environment appended after ``turn``: a tool's output block or the corrective message ("" after the
    answer, and after the last turn allowed)."""
    if is_tool_action(turn.action):
        return protocol.format_observation(turn.output)
    return turn.output if turn.action == INVALID else ""


@dataclass(frozen=True)
class Piece:
    """A run of response text: written by the model (``turn`` None) or inserted by the environment after ``turn``."""

    text: str
    turn: Turn | None = None
    cut: bool = False  # the insertion was cut short by the response cap


def split_response(trajectory: Trajectory) -> list[Piece]:
    """The response as the rollout built it: model text, then each turn's insertion, in order.

    The insertions are known exactly from the typed turns (``format_observation`` of a tool's output, the
    corrective message of an invalid turn), so the text is split at them rather than re-parsed for tags (the
    corrective message quotes ``<search> and </search>`` as words). An insertion the response cap cut is matched
    by its prefix at the end; text that cannot be matched is kept as the model's.
    """
    text, position, pieces = trajectory.response_text, 0, []
    protocol = Protocol.reading(trajectory.tool_calls)  # a user's tool is a tag too (its output escaped it)
    inserting = [turn for turn in trajectory.turns if _inserted(turn, protocol)]
    for i, turn in enumerate(inserting):
        inserted = _inserted(turn, protocol)
        at = text.find(inserted, position)
        cut = False
        if at < 0 and i == len(inserting) - 1 and trajectory.finish_reason == "length":
            tail = text[position:]
            size = next((k for k in range(len(inserted) - 1, 0, -1) if tail.endswith(inserted[:k])), 0)
            at, inserted, cut = (len(text) - size, inserted[:size], True) if size else (-1, inserted, False)
        if at < 0:
            break
        pieces += [Piece(text[position:at]), Piece(inserted, turn, cut)]
        position = at + len(inserted)
    pieces.append(Piece(text[position:]))
    return [piece for piece in pieces if piece.text or piece.turn is not None]


def render_piece(piece: Piece, tags: tuple[str, ...]) -> str:
    """Model text as its tagged blocks (``tags``: the protocol's); a tool's output or the corrective message as one
    environment block."""
    turn = piece.turn
    if turn is None and not piece.text.strip():
        return _block("text", "model text: whitespace only", f"({len(piece.text)} whitespace characters)")
    if turn is None:
        return "".join(render_segment(s) for s in segments(piece.text, tags, unclosed=False))
    cut = " (cut at the response cap)" if piece.cut else ""
    if turn.action == INVALID:
        why = f": {turn.error}" if turn.error else ""
        return _block("corrective", f"environment: corrective message{why}{cut}", piece.text.strip())
    status = "" if turn.ok else f" (failed: {turn.error})" if turn.error else " (failed)"
    output = segments(piece.text, (RESPONSE,))
    body = output[0].text if output and output[0].tag == RESPONSE else piece.text.strip()
    return _block(RESPONSE, f"{turn.action} output{status}{cut}", body)


def render_trajectory(step: int | None, trajectory: Trajectory, model: str = "", stage: str = "") -> str:
    """A scored trajectory: which model wrote it at which stage, question, golds, reward, then its blocks in order."""
    example, reward = trajectory.example, trajectory.scored
    turns = ", ".join(f"{a} x{n}" for a, n in Counter(t.action for t in trajectory.turns).items()) or "none"
    info = [
        f"source: {example.data_source if example else '?'}",
        f"gold: {', '.join(example.golds) if example else '?'}",
        f"predicted: {reward.answer}",
        f"score: {reward.score}",
        f"format ok: {reward.format_ok}",
        f"finish: {trajectory.finish_reason or '?'}",
        f"turns: {turns}",
        f"model tokens: {trajectory.n_model_tokens}",
    ]
    who = " · ".join(x for x in (model, stage, f"step {step}" if step is not None else "") if x)
    tag = f'<span class="who">{esc(who)}</span> ' if who else ""
    tags = Protocol.reading(trajectory.tool_calls).tags
    blocks = "".join(render_piece(piece, tags) for piece in split_response(trajectory))
    return (
        f'<div class="traj {"ok" if reward.acc else "bad"}"><p>{tag}<b>Q:</b> '
        f'{esc(example.question if example else "")}</p><p class="meta">{esc(" · ".join(info))}</p>{blocks}</div>'
    )
