"""The protocol of docs/method.md §1, defined once: tools, tags, stop strings, parsing, what the environment inserts.

The rollout, the reward's format check, the prompt templates, the chat trace, the report and the metrics all
read the protocol from here, so adding a tool is one :class:`ToolSpec` in :data:`TOOLS` plus its
implementation (see docs/tools.md). This module imports nothing from tapo: it sits below every stage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ToolSpec:
    """How the model calls one tool: ``<name> input </name>``, and how prompts and messages describe it."""

    name: str  # the tag name, also the tool's name in the registry and the config
    rule: str  # TAPO's prompt rule that offers the tool (docs/method.md §5)
    terse_rule: str  # the same rule in one short sentence (the "minimal" templates)
    hint: str  # the corrective message's reminder of how to call it
    tag_like_input: bool = False  # True: its input may hold tag-like text (a program printing "<b>")


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        name="search",
        rule=(
            "If you lack knowledge, call the search engine with <search> query </search>. "
            "It returns the top results between <response> and </response>. You may search as often as you need."
        ),
        terse_rule="To look up a fact, write <search> query </search>.",
        hint="If I want to search, I should put the query between <search> and </search>.",
    ),
    ToolSpec(
        name="code",
        rule=(
            "If you need to compute, write a Python program between <code> and </code>. "
            "What it prints comes back between <response> and </response>, so print the result."
        ),
        terse_rule="To compute, write Python that prints the result in <code> </code>.",
        hint="If I want to run Python, I should put the program between <code> and </code> and print the result.",
        tag_like_input=True,
    ),
)
TOOL_NAMES: tuple[str, ...] = tuple(tool.name for tool in TOOLS)
THINK, RESPONSE, ANSWER = "think", "response", "answer"
# Every tag of the protocol, in the order a response uses them.
TAGS: tuple[str, ...] = (THINK, *TOOL_NAMES, RESPONSE, ANSWER)
# Generation stops after a closed action: the environment acts on it (or the trajectory ends on the answer).
STOP_STRINGS: tuple[str, ...] = (*(f"</{name}>" for name in TOOL_NAMES), f"</{ANSWER}>")
# A turn with no valid action is recorded as this action kind.
INVALID = "invalid"

_ACTION = re.compile(rf"<({'|'.join((*TOOL_NAMES, ANSWER))})>(.*?)</\1>", re.DOTALL)
# A protocol tag written in tool output; escaped so it cannot close the <response> block early.
_PROTOCOL_TAG = re.compile(rf"<(/?)({'|'.join(TAGS)})(\s*)>")
_ANSWER_BLOCK = re.compile(rf"<{ANSWER}\s*>(.*?)</{ANSWER}\s*>", re.DOTALL)


@dataclass(frozen=True)
class Action:
    """A complete action block of a model turn: a tool call or the final answer."""

    kind: str  # a name in TOOL_NAMES, or ANSWER
    content: str


def parse_action(text: str) -> Action | None:
    """The first complete ``<tool|answer>…</…>`` block of ``text``, its content stripped; None if none."""
    match = _ACTION.search(text)
    if match is None:
        return None
    return Action(kind=match.group(1), content=match.group(2).strip())


def escape_tool_output(output: str) -> str:
    """Tool output with protocol tags made inert (``</response>`` → ``&lt;/response&gt;``).

    A web page or a program may print a protocol tag; unescaped, a literal ``</response>`` would end the
    inserted block early and the model would be blamed for a broken format. Other tag-like text is kept.
    """
    return _PROTOCOL_TAG.sub(lambda m: f"&lt;{m.group(1)}{m.group(2)}{m.group(3)}&gt;", output)


def format_observation(output: str) -> str:
    """How a tool output is inserted after the model's action (mask 0)."""
    return f"\n\n<{RESPONSE}>{escape_tool_output(output.strip())}</{RESPONSE}>\n\n"


def corrective_message(allowed_tools: frozenset[str]) -> str:
    """Inserted (mask 0) after a turn with no valid action: names only the tags this template allows."""
    hints = " ".join(tool.hint for tool in TOOLS if tool.name in allowed_tools)
    return (
        f"\nMy previous action is invalid. {hints + ' ' if hints else ''}"
        f"If I want to give the final answer, I should put the answer between <{ANSWER}> and </{ANSWER}>. "
        "Let me try again.\n"
    )


def last_answer(text: str) -> str | None:
    """The last ``<answer>`` content, whatever the format: for reports and debugging of broken responses."""
    found = _ANSWER_BLOCK.findall(text)
    return found[-1].strip() if found else None


def label(tag: str) -> str:
    """What a reader calls the content of ``tag`` (trace panels, report blocks)."""
    return {THINK: "reasoning", RESPONSE: "tool output", ANSWER: "answer"}.get(tag, f"{tag} call")


@dataclass(frozen=True)
class Segment:
    """A piece of a response: ``tag`` is a protocol tag, or None for text outside any block."""

    tag: str | None
    text: str


def segments(text: str, tags: tuple[str, ...] = TAGS, unclosed: bool = True) -> list[Segment]:
    """Split ``text`` at blocks of ``tags``; blank text between blocks is dropped, the rest kept in order.

    With ``unclosed`` a block still open at the end runs to the end (a turn being streamed); without it an
    unclosed tag stays untagged text (a finished response, shown as written).
    """
    end = r"(?:</\1>|$)" if unclosed else r"</\1>"
    block = re.compile(rf"<({'|'.join(map(re.escape, tags))})>(.*?){end}", re.DOTALL)
    out: list[Segment] = []
    position = 0
    for match in block.finditer(text):
        if text[position : match.start()].strip():
            out.append(Segment(None, text[position : match.start()].strip()))
        out.append(Segment(match.group(1), match.group(2).strip()))
        position = match.end()
    if text[position:].strip():
        out.append(Segment(None, text[position:].strip()))
    return out
