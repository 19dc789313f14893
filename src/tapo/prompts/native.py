"""The native call format through the model's chat template (``tools.call_format: native``, docs/tools.md).

The prompt is ``apply_chat_template(messages, tools=[the tools' JSON schemas], add_generation_prompt=True)``. After
a model turn, what the environment appends is what the chat template renders for the next message (the tool's
result as a ``tool`` message, a corrective note as a ``user`` message) plus the next assistant header: the
conversation is rendered with and without that message and the insertion is the suffix, as token ids (the
tokenized render without the message must be an exact prefix of the tokenized render with it). The model's own
ids are never re-tokenized: what is rendered for its turns only has to end the way the template ends a turn.

Which template: the model's own, when it offers tools and writes calls as ``<tool_call>{json}</tool_call>`` (the
Hermes style of Qwen2/2.5, Qwen3, SmolLM3 and Hermes); for a ChatML tokenizer whose template has no tool support
(SmolLM2's ignores ``tools`` and ``tool_calls``), :data:`HERMES_CHATML`, tapo's Hermes-style ChatML template; any
other template is refused before any work with one line (:class:`NativeFormatError`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from tapo.protocol import TOOL_CALL, Protocol

logger = logging.getLogger(__name__)

Message = dict[str, Any]

HERMES_CHATML = """\
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}
    {{- '# Tools\\n\\nYou may call these functions; their JSON schemas are between <tools> and </tools>:\\n<tools>' }}
    {%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}
    {{- '\\n</tools>\\n\\nTo call one, write its name and arguments as a JSON object between <tool_call> and '
        + '</tool_call>:\\n<tool_call>\\n{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call>'
        + '<|im_end|>\\n' }}
{%- elif messages[0].role == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'system' and loop.first %}
    {%- elif message.role == 'assistant' and message.tool_calls %}
        {{- '<|im_start|>assistant' }}
        {%- if message.content %}{{- '\\n' + message.content }}{%- endif %}
        {%- for call in message.tool_calls %}
            {%- if call.function is defined %}{%- set call = call.function %}{%- endif %}
            {{- '\\n<tool_call>\\n' + ({'name': call.name, 'arguments': call.arguments} | tojson) + '\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == 'tool' %}
        {{- '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""
"""tapo's Hermes-style ChatML template: the native format of a ChatML model whose own template has no tool support.
Tools are listed in a system message, a call is ``<tool_call>\\n{"name": …, "arguments": {…}}\\n</tool_call>`` and a
result comes back in ``<tool_response>`` inside a user turn, as in Qwen2.5's template."""

# A stand-in conversation for checking a template (its tools, calls and results) and for rendering the messages
# that follow a prompt: what a template renders after the first user message does not depend on its text.
STAND_IN_USER: Message = {"role": "user", "content": "(the question)"}
_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "probe_tool",
        "description": "A probe.",
        "parameters": {"type": "object", "properties": {"probe_argument": {"type": "string"}}},
    },
}
_PROBE_CALL = {"name": "probe_tool", "arguments": {"probe_argument": "probe value"}}
_PROBE_TEXT = "probe text 7"


class NativeFormatError(ValueError):
    """A chat template the native format cannot use (no Hermes-style tool calls, no ChatML to fall back on)."""


def tool_schemas(protocol: Protocol, names: frozenset[str] | set[str]) -> list[dict[str, Any]]:
    """The JSON schemas a chat template lists (``tools=``): each of ``names``, in the protocol's order, with its
    description and its arguments' schema from the tool API."""
    return [
        {
            "type": "function",
            "function": {"name": tool.name, "description": tool.description, "parameters": tool.schema},
        }
        for tool in protocol.tools
        if tool.name in names
    ]


def assistant_call(content: str, call: dict[str, Any]) -> Message:
    """An assistant message with one tool call, as chat templates take it (OpenAI's message shape)."""
    return {"role": "assistant", "content": content, "tool_calls": [{"type": "function", "function": call}]}


class NativeChat:
    """A tokenizer's chat template as the native call format: the prompt's ids and the ids of each insertion.

    ``fallback`` says whether the template is tapo's :data:`HERMES_CHATML` rather than the model's own;
    ``end_of_turn`` is the text the template closes an assistant turn with (``<|im_end|>\\n``).
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        own = getattr(tokenizer, "chat_template", None)
        calls = self._probe_calls(own) if isinstance(own, str) else None
        if calls == "hermes":
            self.template, self.fallback = str(own), False
        elif calls is None and {"<|im_start|>", "<|im_end|>"} <= set(tokenizer.get_vocab()):
            self.template, self.fallback = HERMES_CHATML, True
        elif calls is None:
            raise NativeFormatError(
                "tools.call_format=native: the model's chat template has no tool support and its tokenizer is not "
                "ChatML, so tapo has no native format for it; use tools.call_format=tags"
            )
        else:
            raise NativeFormatError(
                "tools.call_format=native: the model's chat template writes tool calls in its own way, not as "
                "<tool_call>{json}</tool_call>, which is the native format tapo reads; use tools.call_format=tags"
            )
        turn = self.render([STAND_IN_USER, {"role": "assistant", "content": _PROBE_TEXT}])
        self.end_of_turn = turn[turn.rindex(_PROBE_TEXT) + len(_PROBE_TEXT) :]
        self._probe = [STAND_IN_USER, assistant_call("", _PROBE_CALL)]
        for role in ("tool", "user"):
            if not self.render([*self._probe, {"role": role, "content": _PROBE_TEXT}], True).startswith(
                self.render(self._probe)
            ):
                raise NativeFormatError(
                    f"tools.call_format=native: the chat template rewrites earlier turns when a {role} message "
                    "follows, so no insertion can extend the model's tokens; use tools.call_format=tags"
                )

    def _probe_calls(self, template: str) -> str | None:
        """How ``template`` writes a probe call: ``"hermes"`` (it lists the tools and writes
        ``<tool_call>{"name": …, "arguments": …}</tool_call>``), ``"other"`` (it lists the tools, or fails on them,
        and writes calls some other way), None (no tool support: it ignores ``tools`` and ``tool_calls``)."""
        try:
            text = self._apply(
                template, [STAND_IN_USER, assistant_call("", _PROBE_CALL)], [_PROBE_TOOL], generation_prompt=False
            )
        except Exception:  # a template that raises on tools or tool calls has no tool support tapo can use
            return "other"
        if "probe_tool" not in text:
            return None
        start, end = text.rfind(f"<{TOOL_CALL}>"), text.rfind(f"</{TOOL_CALL}>")
        if "probe_argument" not in text[: max(start, 0)] or not 0 <= start < end:
            return "other"
        try:
            return "hermes" if json.loads(text[start + len(TOOL_CALL) + 2 : end]) == _PROBE_CALL else "other"
        except json.JSONDecodeError:
            return "other"

    def _apply(
        self, template: str, messages: Sequence[Message], tools: list[dict[str, Any]] | None, generation_prompt: bool
    ) -> str:
        return str(
            self.tokenizer.apply_chat_template(
                list(messages),
                tools=tools or None,
                chat_template=template,
                tokenize=False,
                add_generation_prompt=generation_prompt,
            )
        )

    def render(
        self, messages: Sequence[Message], generation_prompt: bool = False, tools: list[dict[str, Any]] | None = None
    ) -> str:
        """The conversation as this format's template writes it."""
        return self._apply(self.template, messages, tools, generation_prompt)

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, messages: Sequence[Message], tools: list[dict[str, Any]]) -> list[int]:
        """The prompt: the messages and the tools' schemas through the template, with the assistant header."""
        return self._ids(self.render(messages, True, tools))

    def turn_end(self, turn_text: str) -> str:
        """What closes the model's turn as the template closes it: the whole end of turn after a stop string, its
        tail after the model's own end-of-turn token (``\\n`` after a sampled ``<|im_end|>``)."""
        eos = self.tokenizer.eos_token or ""
        if eos and self.end_of_turn.startswith(eos) and turn_text.endswith(eos):
            return self.end_of_turn[len(eos) :]
        return self.end_of_turn

    def insertion_ids(
        self, history: Sequence[Message], message: Message, turn_text: str, tools: list[dict[str, Any]]
    ) -> list[int]:
        """The ids appended after the model's turn (``turn_text``, the last message of ``history``): the rest of
        its end of turn, then ``message`` and the next assistant header as the template renders them after
        ``history``. When the render without ``message`` is not an exact prefix of the render with it (a template
        that rewrites earlier turns), the insertion is the same message as it renders after the stand-in call checked
        at the start."""
        end = self._ids(self.turn_end(turn_text))
        before, after = self.render(history, False, tools), self.render([*history, message], True, tools)
        before_ids, after_ids = self._ids(before), self._ids(after)
        if after_ids[: len(before_ids)] == before_ids:
            return end + after_ids[len(before_ids) :]
        if after.startswith(before):
            return end + self._ids(after[len(before) :])
        logger.warning(
            "the chat template rewrites earlier turns: a %s message inserted as after a stand-in", message["role"]
        )
        stand_in = self.render(self._probe)  # checked at the start: a prefix of its render with either message
        return end + self._ids(self.render([*self._probe, message], True)[len(stand_in) :])


@lru_cache(maxsize=4)
def native_chat(tokenizer: Any) -> NativeChat:
    """The native format of a tokenizer, checked once (rendering probes is not free)."""
    return NativeChat(tokenizer)
