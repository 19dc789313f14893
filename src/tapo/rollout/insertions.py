"""What the environment appends after a model turn, as token ids, in the run's call format (``tools.call_format``).

TAPO's tags: a tool's output in a ``<response>`` block, or the corrective message, tokenized on its own. The native
format: the message the chat template renders after the model's turn (the tool's result or why the call could not
be made as a ``tool`` message, the corrective note as a ``user`` message) and the next assistant header, from one
trajectory's conversation (``tapo.prompts.native``). Either way the model's sampled ids are left as they are.
"""

from __future__ import annotations

import json
from typing import Any
from typing import Protocol as Interface

from tapo.prompts.native import STAND_IN_USER, Message, assistant_call, native_chat, tool_schemas
from tapo.protocol import TOOL_CALL, Action, Protocol, is_tool_action, text_argument
from tapo.records import Turn


class Insertions(Interface):
    """The ids to append after a model turn (``text``, its ``action``) that the environment answered with ``turn``."""

    def __call__(self, text: str, action: Action | None, turn: Turn) -> list[int]: ...


class TagInsertions:
    """TAPO's tags: the tool output in its ``<response>`` block, or the corrective message, tokenized on its own."""

    def __init__(self, protocol: Protocol, tokenizer: Any) -> None:
        self.protocol = protocol
        self.tokenizer = tokenizer

    def __call__(self, text: str, action: Action | None, turn: Turn) -> list[int]:
        inserted = self.protocol.format_observation(turn.output) if is_tool_action(turn.action) else turn.output
        return list(self.tokenizer(inserted, add_special_tokens=False)["input_ids"])


class NativeInsertions:
    """One trajectory's conversation in the native format: each model turn joins it as an assistant message (with
    its call, when it made one), and what the environment answers is rendered after it by the chat template.

    The conversation starts at a stand-in user message: the trajectory's prompt ids are already rendered, and what
    a template writes after the first user message does not depend on its text.
    """

    def __init__(self, protocol: Protocol, tokenizer: Any, allowed: frozenset[str]) -> None:
        self.protocol = protocol
        self.chat = native_chat(tokenizer)
        self.tools = tool_schemas(protocol, allowed)
        self.history: list[Message] = [STAND_IN_USER]

    def __call__(self, text: str, action: Action | None, turn: Turn) -> list[int]:
        self.history.append(self._assistant(text, action))
        if is_tool_action(turn.action):
            message = {"role": "tool", "content": self.protocol.observation(turn.output)}
        else:  # a call block that could not be made is answered as a tool would be; a turn without one by the user
            message = {"role": "tool" if action is not None else "user", "content": turn.output}
        ids = self.chat.insertion_ids(self.history, message, text, self.tools)
        self.history.append(message)
        return ids

    def _assistant(self, text: str, action: Action | None) -> Message:
        """The model's turn as a message: its words without its end-of-turn token, and its call when it is one."""
        eos = self.chat.tokenizer.eos_token
        words = text.split(eos)[0] if eos else text
        if action is None or not is_tool_action(action.kind):
            return {"role": "assistant", "content": words.strip()}
        schema = self.protocol.spec(action.kind).schema
        argument = text_argument(schema)
        arguments = {argument: action.content} if argument is not None else json.loads(action.content)
        before = words[: words.find(f"<{TOOL_CALL}>")].strip()
        return assistant_call(before, {"name": action.kind, "arguments": arguments})


def insertions_for(protocol: Protocol, tokenizer: Any, allowed: frozenset[str]) -> Insertions:
    """A trajectory's insertions in ``protocol``'s call format (native ones keep its conversation: one each)."""
    if protocol.native:
        return NativeInsertions(protocol, tokenizer, allowed)
    return TagInsertions(protocol, tokenizer)
