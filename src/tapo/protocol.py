"""The protocol of docs/method.md §1, defined once: tools, tags, stop strings, parsing, what the environment inserts.

It has two call formats (``tools.call_format``, docs/tools.md#call-formats): TAPO's tags (``<search> q </search>``,
the default) and ``native``, the JSON tool calls of instruct models' chat templates
(``<tool_call>{"name": "search", "arguments": {"query": "q"}}</tool_call>``); the final answer is
``<answer> … </answer>`` in both, since the reward reads it. What this module does for the native format is text
only (stop strings, parsing, escaping, messages); rendering it through a chat template is ``tapo.prompts.native``.

The rollout, the reward's format check, the prompt templates, the chat trace, the report and the metrics all
read the protocol from here: a :class:`Protocol` over the run's tool specs (TAPO's two, :data:`TOOLS`, and any a
user adds: docs/tools.md), made once per run and passed to them. This module imports nothing from tapo: it sits
below every stage.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

CallFormat = Literal["tags", "native"]


@dataclass(frozen=True)
class ToolSpec:
    """How the model calls one tool: ``<name> input </name>``, and how prompts and messages describe it."""

    name: str  # the tag name, also the tool's name in the registry and the config
    rule: str  # TAPO's prompt rule that offers the tool (docs/method.md §5)
    terse_rule: str  # the same rule in one short sentence (the "minimal" templates)
    hint: str  # the corrective message's reminder of how to call it
    tag_like_input: bool = False  # True: its input may hold tag-like text (a program printing "<b>")
    description: str = ""  # what it does, without call syntax: the native format's function description
    parameters: str = ""  # its arguments' JSON schema as JSON text (a spec stays hashable); "": one text "input"

    @cached_property
    def schema(self) -> dict[str, Any]:
        """The JSON schema of its arguments (:attr:`parameters`), as the native format offers and checks it."""
        if not self.parameters:
            return {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}
        return dict(json.loads(self.parameters))


def text_argument(schema: Mapping[str, Any]) -> str | None:
    """The one argument a tool reads as raw text (its schema's single property, a required string), or None: the
    tool reads a JSON object of its arguments."""
    properties = schema.get("properties") or {}
    if len(properties) == 1:
        (name, prop), required = next(iter(properties.items())), schema.get("required", [])
        if prop.get("type") == "string" and name in required:
            return str(name)
    return None


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        name="search",
        rule=(
            "If you lack knowledge, call the search engine with <search> query </search>. "
            "It returns the top results between <response> and </response>. You may search as often as you need."
        ),
        terse_rule="To look up a fact, write <search> query </search>.",
        hint="If I want to search, I should put the query between <search> and </search>.",
        description="Search the knowledge corpus; returns the top results.",
        parameters=json.dumps({"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}),
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
        description="Run a Python program; returns what it prints, so print the result.",
        parameters=json.dumps({"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}),
    ),
)
THINK, RESPONSE, ANSWER = "think", "response", "answer"
# The native format's call block and the block its chat templates put a tool's result in (Hermes, Qwen2/2.5).
TOOL_CALL, TOOL_RESPONSE = "tool_call", "tool_response"
# A turn with no valid action is recorded as this action kind.
INVALID = "invalid"
# Names no tool may take: the protocol's own tags and the action kinds a turn records besides tool names.
RESERVED: frozenset[str] = frozenset({THINK, RESPONSE, ANSWER, INVALID, TOOL_CALL, TOOL_RESPONSE})
# What a tag name may be: the format check reads tags with this pattern (tapo.rewards.format_check).
TAG_NAME = re.compile(r"[A-Za-z][\w-]*")

_ANSWER_BLOCK = re.compile(rf"<{ANSWER}\s*>(.*?)</{ANSWER}\s*>", re.DOTALL)


@dataclass(frozen=True)
class Action:
    """A complete action block of a model turn: a tool call or the final answer (or, in the native format, a call
    block that cannot be made, whose ``error`` the model reads)."""

    kind: str  # a tool name of the protocol, ANSWER, or INVALID (a native call that cannot be made)
    content: str
    error: str = ""  # why the call cannot be made: not JSON, unknown tool, wrong arguments


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
    call_format: CallFormat = "tags"

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

    @property
    def native(self) -> bool:
        return self.call_format == "native"

    @cached_property
    def tags(self) -> tuple[str, ...]:
        """Every tag of the protocol, in the order a response uses them."""
        if self.native:
            return (THINK, TOOL_CALL, TOOL_RESPONSE, ANSWER)
        return (THINK, *self.tool_names, RESPONSE, ANSWER)

    @cached_property
    def stop_strings(self) -> tuple[str, ...]:
        """Generation stops after a closed action: the environment acts on it (or the trajectory ends on the answer).
        The engine also stops at EOS, which ends a chat turn."""
        calls = (f"</{TOOL_CALL}>",) if self.native else tuple(f"</{name}>" for name in self.tool_names)
        return (*calls, f"</{ANSWER}>")

    @cached_property
    def tag_like_input(self) -> frozenset[str]:
        """Blocks whose input may hold tag-like text (a program printing "<b>"): in the native format every call,
        whose JSON arguments may hold anything."""
        if self.native:
            return frozenset({TOOL_CALL})
        return frozenset(tool.name for tool in self.tools if tool.tag_like_input)

    @cached_property
    def _action(self) -> re.Pattern[str]:
        blocks = (TOOL_CALL,) if self.native else self.tool_names
        return re.compile(rf"<({'|'.join(map(re.escape, (*blocks, ANSWER)))})>(.*?)</\1>", re.DOTALL)

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
        """The first complete ``<tool|answer>…</…>`` block of ``text`` (native: ``<tool_call>…</tool_call>`` or the
        answer), its content stripped; None if none."""
        match = self._action.search(text)
        if match is None:
            return None
        if self.native and match.group(1) == TOOL_CALL:
            return self.parse_call(match.group(2).strip())
        return Action(kind=match.group(1), content=match.group(2).strip())

    def parse_call(self, body: str) -> Action:
        """A native call ``{"name": tool, "arguments": {...}}`` as the action the tags would give: the raw text of a
        one-text-argument tool, else its arguments as JSON. A call that cannot be made is an INVALID action whose
        ``error`` says why (it becomes the tool message the model reads, never a crash)."""
        try:
            call = json.loads(body)
        except json.JSONDecodeError as error:
            return Action(INVALID, body, f"the call is not JSON ({error.msg} at character {error.pos})")
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return Action(INVALID, body, 'a call is a JSON object {"name": <tool>, "arguments": {...}}')
        name, arguments = call["name"], call.get("arguments", {})
        if isinstance(arguments, str):  # some models write the arguments as a JSON string (OpenAI's wire format)
            with contextlib.suppress(json.JSONDecodeError):
                arguments = json.loads(arguments)
        if name not in self.tool_names:
            return Action(INVALID, body, f"there is no tool {name!r}")
        if not isinstance(arguments, dict):
            return Action(INVALID, body, f"the arguments of {name} must be a JSON object")
        schema = self.spec(name).schema
        missing = [key for key in schema.get("required", []) if key not in arguments]
        if missing:
            return Action(INVALID, body, f"{name} needs the argument(s) {', '.join(missing)}")
        if (argument := text_argument(schema)) is None:
            return Action(name, json.dumps(arguments, ensure_ascii=False))
        if set(arguments) != {argument} or not isinstance(arguments[argument], str):
            return Action(INVALID, body, f'{name} takes one argument, "{argument}", a string')
        return Action(name, arguments[argument].strip())

    def escape_tool_output(self, output: str) -> str:
        """Tool output with protocol tags made inert (``</response>`` → ``&lt;/response&gt;``).

        A web page or a program may print a protocol tag; unescaped, a literal ``</response>`` would end the
        inserted block early and the model would be blamed for a broken format. Other tag-like text is kept.
        """
        return self._protocol_tag.sub(lambda m: f"&lt;{m.group(1)}{m.group(2)}{m.group(3)}&gt;", output)

    def observation(self, output: str) -> str:
        """A tool output as the environment shows it: stripped, protocol tags made inert (the native format's
        tool message content)."""
        return self.escape_tool_output(output.strip())

    def format_observation(self, output: str) -> str:
        """How a tool output is inserted after the model's action in the tags format (mask 0)."""
        return f"\n\n<{RESPONSE}>{self.observation(output)}</{RESPONSE}>\n\n"

    def native_hint(self, allowed_tools: frozenset[str]) -> str:
        """How to call a tool in the native format, naming only the tools this template allows."""
        names = [name for name in self.tool_names if name in allowed_tools]
        if not names:
            return f"No tool is available: give the final answer between <{ANSWER}> and </{ANSWER}>."
        return (
            f'To call a tool ({", ".join(names)}), write <{TOOL_CALL}>{{"name": <tool>, "arguments": <JSON object>}}'
            f"</{TOOL_CALL}>. To give the final answer, put it between <{ANSWER}> and </{ANSWER}>."
        )

    def call_error(self, error: str, allowed_tools: frozenset[str]) -> str:
        """The native format's tool message for a call that cannot be made: what was wrong and how to call."""
        return f"[Invalid tool call: {error}. {self.native_hint(allowed_tools)}]"

    def corrective_message(self, allowed_tools: frozenset[str]) -> str:
        """Inserted (mask 0) after a turn with no valid action: names only the tags this template allows (native:
        the text of a user message)."""
        if self.native:
            return f"Your last turn has no tool call and no answer. {self.native_hint(allowed_tools)}"
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
    names = {THINK: "reasoning", RESPONSE: "tool output", ANSWER: "answer"}
    names |= {TOOL_CALL: "tool call", TOOL_RESPONSE: "tool output"}  # the native format's blocks
    return names.get(tag, f"{tag} call")


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
