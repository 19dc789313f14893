"""The output protocol of spec §1: tags, stop strings, action parsing and the text the environment inserts.

Everything the environment writes into a response is built here, so the rollout, the reward's format
check and the chat display agree on one definition of the protocol.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

TAGS = ("think", "search", "code", "response", "answer")
TOOL_TAGS = ("search", "code")
STOP_STRINGS = ("</search>", "</code>", "</answer>")

ActionKind = Literal["search", "code", "answer"]

_ACTION = re.compile(r"<(search|code|answer)>(.*?)</\1>", re.DOTALL)


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    content: str


def parse_action(text: str) -> Action | None:
    """The first complete ``<search|code|answer>…</…>`` block of ``text``, its content stripped; None if none."""
    match = _ACTION.search(text)
    if match is None:
        return None
    return Action(kind=match.group(1), content=match.group(2).strip())  # type: ignore[arg-type]


def format_observation(output: str) -> str:
    """How a tool output is inserted after the model's action (mask 0)."""
    return f"\n\n<response>{output.strip()}</response>\n\n"


def corrective_message(allowed_tools: frozenset[str]) -> str:
    """Inserted (mask 0) after a turn with no valid action: names only the tags this template allows."""
    how = {
        "search": "If I want to search, I should put the query between <search> and </search>.",
        "code": "If I want to run Python, I should put the program between <code> and </code> and print the result.",
    }
    hints = " ".join(how[tool] for tool in TOOL_TAGS if tool in allowed_tools)
    return (
        f"\nMy previous action is invalid. {hints + ' ' if hints else ''}"
        "If I want to give the final answer, I should put the answer between <answer> and </answer>. "
        "Let me try again.\n"
    )
