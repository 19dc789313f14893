"""The protocol of docs/method.md §1, defined once: tools, tags, stop strings, parsing, what the environment inserts.

The rollout, the reward's format check, the prompt templates, the chat trace, the report and the metrics all
read the protocol from here: a :class:`Protocol` over the run's tool specs (TAPO's two, :data:`TOOLS`, and any a
user adds: docs/tools.md), made once per run and passed to them. This module imports nothing from tapo: it sits
below every stage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property


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
THINK, RESPONSE, ANSWER = "think", "response", "answer"
# A turn with no valid action is recorded as this action kind.
INVALID = "invalid"
# Names no tool may take: the protocol's own tags and the action kinds a turn records besides tool names.
RESERVED: frozenset[str] = frozenset({THINK, RESPONSE, ANSWER, INVALID})
# What a tag name may be: the format check reads tags with this pattern (tapo.rewards.format_check).
TAG_NAME = re.compile(r"[A-Za-z][\w-]*")

_ANSWER_BLOCK = re.compile(rf"<{ANSWER}\s*>(.*?)</{ANSWER}\s*>", re.DOTALL)


@dataclass(frozen=True)
class Action:
    """A complete action block of a model turn: a tool call or the final answer."""

    kind: str  # a tool name of the protocol, or ANSWER
    content: str


def is_tool_action(kind: str) -> bool:
    """Whether a recorded turn's action is a tool call (not the answer, not an invalid turn), whatever the tools."""
    return kind not in (ANSWER, INVALID)


@dataclass(frozen=True)
class Protocol:
    """The protocol over one set of tools: its tags, stop strings, parsing, escaping and corrective message.

    A run resolves its tools once (TAPO's two, a user's, an MCP server's: ``tapo.tools.catalog``) and passes
    this object to whatever reads tags, so nothing mutates module state; :data:`TAPO` is the default.
    """

    tools: tuple[ToolSpec, ...]

    def __post_init__(self) -> None:
        names = [tool.name for tool in self.tools]
        for name in names:
            if not TAG_NAME.fullmatch(name):
                raise ValueError(f"tool name {name!r} is not a tag name (a letter, then letters, digits, _ or -)")
            if name in RESERVED:
                raise ValueError(f"tool name {name!r} clashes with a protocol tag ({', '.join(sorted(RESERVED))})")
        if duplicates := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(f"two tools are named {', '.join(duplicates)}")

    @cached_property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(tool.name for tool in self.tools)

    @cached_property
    def tags(self) -> tuple[str, ...]:
        """Every tag of the protocol, in the order a response uses them."""
        return (THINK, *self.tool_names, RESPONSE, ANSWER)

    @cached_property
    def stop_strings(self) -> tuple[str, ...]:
        """Generation stops after a closed action: the environment acts on it (or the trajectory ends on the answer)."""
        return (*(f"</{name}>" for name in self.tool_names), f"</{ANSWER}>")

    @cached_property
    def tag_like_input(self) -> frozenset[str]:
        """Tools whose input may hold tag-like text (a program printing "<b>")."""
        return frozenset(tool.name for tool in self.tools if tool.tag_like_input)

    @cached_property
    def _action(self) -> re.Pattern[str]:
        return re.compile(rf"<({'|'.join(map(re.escape, (*self.tool_names, ANSWER)))})>(.*?)</\1>", re.DOTALL)

    @cached_property
    def _protocol_tag(self) -> re.Pattern[str]:
        # A protocol tag written in tool output; escaped so it cannot close the <response> block early.
        return re.compile(rf"<(/?)({'|'.join(map(re.escape, self.tags))})(\s*)>")

    @classmethod
    def reading(cls, tool_names: Iterable[str]) -> Protocol:
        """TAPO's protocol plus tags of these names: it reads a record whose run's tool specs are not at hand (a
        report of a run with a user's tool); its prompt texts for those tools are empty."""
        extra = [ToolSpec(name, "", "", "") for name in dict.fromkeys(tool_names) if name not in TAPO.tool_names]
        return cls((*TOOLS, *extra)) if extra else TAPO

    def spec(self, name: str) -> ToolSpec:
        return self.tools[self.tool_names.index(name)]

    def parse_action(self, text: str) -> Action | None:
        """The first complete ``<tool|answer>…</…>`` block of ``text``, its content stripped; None if none."""
        match = self._action.search(text)
        if match is None:
            return None
        return Action(kind=match.group(1), content=match.group(2).strip())

    def escape_tool_output(self, output: str) -> str:
        """Tool output with protocol tags made inert (``</response>`` → ``&lt;/response&gt;``).

        A web page or a program may print a protocol tag; unescaped, a literal ``</response>`` would end the
        inserted block early and the model would be blamed for a broken format. Other tag-like text is kept.
        """
        return self._protocol_tag.sub(lambda m: f"&lt;{m.group(1)}{m.group(2)}{m.group(3)}&gt;", output)

    def format_observation(self, output: str) -> str:
        """How a tool output is inserted after the model's action (mask 0)."""
        return f"\n\n<{RESPONSE}>{self.escape_tool_output(output.strip())}</{RESPONSE}>\n\n"

    def corrective_message(self, allowed_tools: frozenset[str]) -> str:
        """Inserted (mask 0) after a turn with no valid action: names only the tags this template allows."""
        hints = " ".join(tool.hint for tool in self.tools if tool.name in allowed_tools)
        return (
            f"\nMy previous action is invalid. {hints + ' ' if hints else ''}"
            f"If I want to give the final answer, I should put the answer between <{ANSWER}> and </{ANSWER}>. "
            "Let me try again.\n"
        )

    def segments(self, text: str, tags: tuple[str, ...] | None = None, unclosed: bool = True) -> list[Segment]:
        """:func:`segments` at this protocol's tags (or ``tags``)."""
        return segments(text, self.tags if tags is None else tags, unclosed)


TAPO = Protocol(TOOLS)
"""TAPO's protocol: its two tools, ``search`` and ``code``. The names below are its parts, for readers that
need no other tool set."""
TOOL_NAMES: tuple[str, ...] = TAPO.tool_names
TAGS: tuple[str, ...] = TAPO.tags
STOP_STRINGS: tuple[str, ...] = TAPO.stop_strings
parse_action = TAPO.parse_action
escape_tool_output = TAPO.escape_tool_output
format_observation = TAPO.format_observation
corrective_message = TAPO.corrective_message


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


def segments(text: str, tags: tuple[str, ...] = TAPO.tags, unclosed: bool = True) -> list[Segment]:
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
