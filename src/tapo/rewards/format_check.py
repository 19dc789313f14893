"""The strict output format of docs/method.md §3.

A response is well formed when every tag in it belongs to a ``<name>…</name>`` pair of the protocol
(:attr:`tapo.protocol.Protocol.tags`: TAPO's, or the run's with a user's tools), pairs are not nested, and the
last pair is the one ``answer``, followed only by whitespace. Plain text between pairs is allowed. Inside
``<response>`` (text the environment inserted: web snippets, program output, with protocol tags escaped) nothing
is checked, since the model did not write it; inside a tool whose input may hold tag-like text (``<code>``:
``print("<b>")``) unknown tags are part of the input, but protocol tags are not.

The native call format (``tools.call_format: native``) is checked by the same walk over its tags: ``<tool_call>``
blocks (JSON arguments, which may hold any tag-like text but no protocol tag) and the ``<tool_response>`` blocks
its chat template wraps tool messages in (environment text, not checked); the chat template's own markers
(``<|im_end|>``, ``<|im_start|>user``) are no tags, and the answer still ends the response.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tapo.protocol import ANSWER, RESPONSE, TAPO, TOOL_RESPONSE, Protocol

_TAG_RE = re.compile(r"<(/?)([A-Za-z][\w-]*)\s*>")  # protocol.TAG_NAME: what a tool may be named


@dataclass(frozen=True)
class FormatCheck:
    """The verdict on one response: ``answer`` is the last answer's content when the format is ok."""

    ok: bool
    reason: str = ""
    answer: str | None = None


def _inner_violation(name: str, inner: str, protocol: Protocol) -> str:
    """Why the content of a ``name`` pair is not allowed, or "" when it is."""
    if name in (RESPONSE, TOOL_RESPONSE):  # the environment's text, in either call format
        return ""
    for match in _TAG_RE.finditer(inner):
        tag = match.group(2)
        if tag in protocol.tags:
            return f"<{match.group(1)}{tag}> nested inside <{name}>"
        if name not in protocol.tag_like_input:
            return f"unknown tag <{match.group(1)}{tag}> inside <{name}>"
    return ""


def check_format(text: str, protocol: Protocol = TAPO) -> FormatCheck:
    """Walk every tag pair of ``text`` in order; the first violation found is the reason."""
    position, last_name, last_inner, answers = 0, "", "", 0
    while match := _TAG_RE.search(text, position):
        closing, name = match.group(1), match.group(2)
        if closing:
            return FormatCheck(False, f"stray </{name}> at character {match.start()}")
        if name not in protocol.tags:
            return FormatCheck(False, f"unknown tag <{name}> (allowed: {', '.join(protocol.tags)})")
        close = re.compile(rf"</{name}\s*>").search(text, match.end())
        if close is None:
            return FormatCheck(False, f"unclosed <{name}> at character {match.start()}")
        inner = text[match.end() : close.start()]
        if violation := _inner_violation(name, inner, protocol):
            return FormatCheck(False, violation)
        answers += name == ANSWER
        last_name, last_inner, position = name, inner, close.end()
    if not last_name:
        return FormatCheck(False, f"no tags: the answer must be inside <{ANSWER}></{ANSWER}>")
    if last_name != ANSWER:
        return FormatCheck(False, f"the last tag pair is <{last_name}>, not <{ANSWER}>")
    if answers > 1:
        return FormatCheck(False, f"{answers} answers: the first answer ends the response")
    if text[position:].strip():
        return FormatCheck(False, f"text after </{ANSWER}>")
    return FormatCheck(True, answer=last_inner.strip())
