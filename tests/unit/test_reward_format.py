"""The format validator of docs/method.md §3 on well-formed and adversarial responses."""

from __future__ import annotations

import pytest

from tapo.protocol import TAPO, TOOLS, Protocol
from tapo.protocol import last_answer as extract_answer
from tapo.rewards.format_check import FormatCheck, check_format

LONG = "word " * 20_000


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("<answer>Paris</answer>", "Paris"),
        ("<think>capital of France</think>\n<answer> Paris </answer>\n\n", "Paris"),
        (
            "preamble <think>a</think> between <search>q</search>\n\n<response>Doc 1</response>\n\n<answer>x</answer>",
            "x",
        ),
        ('<code>print("<b>bold</b>")</code><response><b>bold</b></response><answer>ok</answer>', "ok"),
        ("<response>a <think> stray tag from a web page</response><answer>1</answer>", "1"),
        ("<answer></answer>", ""),
        ("<answer>   </answer>", ""),
        ("<answer>Zürich – 東京 🚀</answer>", "Zürich – 東京 🚀"),
        (f"<think>{LONG}</think><answer>{LONG}</answer>", LONG.strip()),
        ("<answer>\\frac{1}{2} and x < y > z</answer>", "\\frac{1}{2} and x < y > z"),
        ("<answer >spaced</answer >", "spaced"),
    ],
)
def test_well_formed(text, answer):
    verdict = check_format(text)
    assert verdict.ok, verdict.reason
    assert verdict.answer == answer


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Paris", "no tags"),
        ("", "no tags"),
        ("<answer>Paris", "unclosed <answer>"),
        ("<think>hmm <answer>Paris</answer>", "unclosed <think>"),
        ("<think>hmm <answer>Paris</answer></think>", "nested inside <think>"),
        ("<think>a<think>b</think></think><answer>x</answer>", "nested inside <think>"),
        ("<answer><answer>x</answer></answer>", "nested inside <answer>"),
        ("<code>x=1 <answer>2</answer></code>", "nested inside <code>"),
        ("<answer>1</answer><think>more</think>", "last tag pair is <think>"),
        ("<think>a</think><search>q</search>", "last tag pair is <search>"),
        ("<answer>1</answer> and more", "text after </answer>"),
        ("<answer>1</answer>\n<|im_end|>", "text after </answer>"),
        ("<answer>1</answer><answer>2</answer>", "2 answers"),
        ("</think><answer>1</answer>", "stray </think>"),
        ("<answer>1</answer></answer>", "stray </answer>"),
        ("<tool>x</tool><answer>1</answer>", "unknown tag <tool>"),
        ("<Answer>1</Answer>", "unknown tag <Answer>"),
        ("<answer><b>Paris</b></answer>", "unknown tag <b> inside <answer>"),
        ('<answer type="final">1</answer>', "stray </answer>"),
        (f"<think>{LONG}", "unclosed <think>"),
    ],
)
def test_broken(text, reason):
    verdict = check_format(text)
    assert not verdict.ok
    assert verdict.answer is None
    assert reason in verdict.reason


def test_extract_answer_is_lenient_and_takes_the_last():
    assert extract_answer("<answer>1</answer> then <answer> 2 </answer> junk") == "2"
    assert extract_answer("no answer") is None


NATIVE = Protocol(TOOLS, "native")
_CALL = '<tool_call>\n{"name": "code", "arguments": {"code": "print(\\"<b>\\")"}}\n</tool_call>'
_RESULT = (
    "<|im_end|>\n<|im_start|>user\n<tool_response>\n<b> </search>\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
)


def test_the_native_format_is_checked_over_its_own_tags():
    text = f"<think> compute </think>\n{_CALL}{_RESULT}<answer> 2 </answer>"
    assert check_format(text, NATIVE) == FormatCheck(True, answer="2")
    assert not check_format(text, TAPO).ok  # the tags format knows no <tool_call>
    tags_text = "<search> x </search>\n\n<response>r</response>\n\n<answer> 2 </answer>"
    assert check_format(tags_text, NATIVE).reason.startswith("unknown tag <search>")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"{_CALL}{_RESULT}", "the last tag pair is <tool_response>"),
        ('<tool_call>{"name": "search", "arguments": {"query": "<answer>"}}</tool_call><answer>1</answer>', "nested"),
        ("<tool_call>{}", "unclosed <tool_call>"),
        ("<answer> 1 </answer> more", "text after </answer>"),
    ],
)
def test_broken_native_responses(text, reason):
    verdict = check_format(text, NATIVE)
    assert not verdict.ok and reason in verdict.reason
