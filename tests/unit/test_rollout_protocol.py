"""The output protocol: action parsing and the text the environment inserts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tapo.rollout.protocol import Action, corrective_message, format_observation, parse_action


def test_first_complete_action_wins():
    text = "<think>x</think><search> capital of France </search><answer>Paris</answer>"
    assert parse_action(text) == Action("search", "capital of France")
    assert parse_action("<code>\nprint(1)\n</code>") == Action("code", "print(1)")
    assert parse_action("<answer> 42 </answer> trailing") == Action("answer", "42")


def test_unclosed_mismatched_or_missing_tags_are_not_actions():
    assert parse_action("<search>never closed") is None
    assert parse_action("<search>x</code>") is None
    assert parse_action("plain text") is None
    assert parse_action("<think>only thinking</think>") is None


def test_observation_and_corrective_text():
    assert format_observation("  Doc 1: hi \n") == "\n\n<response>Doc 1: hi</response>\n\n"
    both = corrective_message(frozenset({"search", "code"}))
    assert "<search>" in both and "<code>" in both and "<answer>" in both
    none = corrective_message(frozenset())
    assert "<search>" not in none and "<code>" not in none and "<answer>" in none


@given(st.sampled_from(["search", "code", "answer"]), st.text().filter(lambda s: "</" not in s), st.text())
def test_any_wrapped_content_parses_back(kind, content, tail):
    action = parse_action(f"<{kind}>{content}</{kind}>{tail}")
    assert action == Action(kind, content.strip())
