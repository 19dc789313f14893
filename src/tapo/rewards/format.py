"""The strict output format of spec §3, and answer extraction.

A response is well formed when every tag in it belongs to a ``<name>…</name>`` pair of the protocol
(think, search, code, response, answer), pairs are not nested, and the last pair is the one ``answer``,
followed only by whitespace. Plain text between pairs is allowed. Inside ``<response>`` (text the
environment inserted: web snippets, program output) nothing is checked, since the model did not write it;
inside ``<code>`` unknown tag-like text is part of the program (``print("<b>")``) but protocol tags are not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PROTOCOL_TAGS = ("think", "search", "code", "response", "answer")
_TAG_RE = re.compile(r"<(/?)([A-Za-z][\w-]*)\s*>")
_ANSWER_RE = re.compile(r"<answer\s*>(.*?)</answer\s*>", re.DOTALL)


@dataclass(frozen=True)
class FormatCheck:
    """The verdict on one response: ``answer`` is the last answer's content when the format is ok."""

    ok: bool
    reason: str = ""
    answer: str | None = None


def _inner_violation(name: str, inner: str) -> str:
    """Why the content of a ``name`` pair is not allowed, or "" when it is."""
    if name == "response":
        return ""
    for match in _TAG_RE.finditer(inner):
        tag = match.group(2)
        if tag in PROTOCOL_TAGS:
            return f"<{match.group(1)}{tag}> nested inside <{name}>"
        if name != "code":
            return f"unknown tag <{match.group(1)}{tag}> inside <{name}>"
    return ""


def check_format(text: str) -> FormatCheck:
    """Walk every tag pair of ``text`` in order; the first violation found is the reason."""
    position, last_name, last_inner, answers = 0, "", "", 0
    while match := _TAG_RE.search(text, position):
        closing, name = match.group(1), match.group(2)
        if closing:
            return FormatCheck(False, f"stray </{name}> at character {match.start()}")
        if name not in PROTOCOL_TAGS:
            return FormatCheck(False, f"unknown tag <{name}> (allowed: {', '.join(PROTOCOL_TAGS)})")
        close = re.compile(rf"</{name}\s*>").search(text, match.end())
        if close is None:
            return FormatCheck(False, f"unclosed <{name}> at character {match.start()}")
        inner = text[match.end() : close.start()]
        if violation := _inner_violation(name, inner):
            return FormatCheck(False, violation)
        answers += name == "answer"
        last_name, last_inner, position = name, inner, close.end()
    if not last_name:
        return FormatCheck(False, "no tags: the answer must be inside <answer></answer>")
    if last_name != "answer":
        return FormatCheck(False, f"the last tag pair is <{last_name}>, not <answer>")
    if answers > 1:
        return FormatCheck(False, f"{answers} answers: the first answer ends the response")
    if text[position:].strip():
        return FormatCheck(False, "text after </answer>")
    return FormatCheck(True, answer=last_inner.strip())


def extract_answer(text: str) -> str | None:
    """The last ``<answer>`` content, whatever the format: for reports and debugging of broken responses."""
    found = _ANSWER_RE.findall(text)
    return found[-1].strip() if found else None
