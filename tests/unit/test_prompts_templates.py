"""Prompt templates: the docs/method.md §5 layout, tool sets, rendering through the chat template, user templates."""

from __future__ import annotations

import pytest

from tapo.prompts.templates import (
    TEMPLATES,
    allowed_tools,
    family_templates,
    get_template,
    load_template_file,
    register_template,
    render_prompt,
)
from tapo.protocol import TAPO, TOOLS, Protocol


def test_base_has_four_rules_and_an_example_with_two_searches_and_one_code_call():
    text = TEMPLATES["base"].text
    assert all(f"\n{i}. " in text for i in (1, 2, 3, 4)) and "\n5. " not in text
    example = text.split("Example:")[1]
    assert example.count("<search>") == 2 and example.count("<code>") == 1
    assert text.rstrip().endswith("Question: {question}")


def test_compact_keeps_the_rules_but_drops_the_example():
    compact = TEMPLATES["compact"].text
    assert "Example:" not in compact and "\n4. " in compact
    assert len(compact) < len(TEMPLATES["base"].text) / 2


@pytest.mark.parametrize(
    ("name", "tools"),
    [("base", {"search", "code"}), ("search_only", {"search"}), ("code_only", {"code"}), ("no_tools", set())],
)
def test_each_variant_only_mentions_its_tools(name, tools):
    assert allowed_tools(name) == frozenset(tools)
    text = TEMPLATES[name].text
    for tag in ("search", "code"):
        assert (f"<{tag}>" in text) == (tag in tools)


def test_render_prompt_goes_through_the_chat_template(tokenizer):
    ids = render_prompt(tokenizer, "  Who wrote Hamlet?  ", "search_only")
    text = tokenizer.decode(ids)
    assert "Question: Who wrote Hamlet?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert ids == list(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_code_braces_in_a_template_survive_filling():
    template = register_template("braces", "Use {x: 1} then answer {question}", ["code"])
    assert template.fill("Q") == "Use {x: 1} then answer Q"
    assert allowed_tools("braces") == frozenset({"code"})
    del TEMPLATES["braces"]


def test_bad_templates_are_rejected():
    with pytest.raises(ValueError, match="placeholder"):
        register_template("nope", "no placeholder", [])
    with pytest.raises(ValueError, match="unknown tools"):
        register_template("nope", "{question}", ["browser"])
    with pytest.raises(KeyError, match="unknown prompt template"):
        get_template("does-not-exist")


def test_templates_load_from_files(tmp_path, tokenizer):
    plain = tmp_path / "mine.txt"
    plain.write_text("Search with <search> q </search>, answer in <answer></answer>.\n{question}")
    assert allowed_tools(str(plain)) == frozenset({"search"})
    assert "Who?" in tokenizer.decode(render_prompt(tokenizer, "Who?", str(plain)))
    spec = tmp_path / "mine.yaml"
    spec.write_text("text: 'Think, then answer. {question}'\ntools: [code]\n")
    assert load_template_file(spec).tools == frozenset({"code"})
    broken = tmp_path / "broken.yaml"
    broken.write_text("- a list\n")
    with pytest.raises(ValueError, match="'text' field"):
        load_template_file(broken)


def test_native_templates_leave_the_tools_to_the_chat_template():
    native = family_templates(Protocol(TOOLS, "native"))
    assert set(native) == set(family_templates(TAPO))  # the same families and ablations, with the same tools
    for name, template in native.items():
        assert template.tools == TEMPLATES[name].tools and "<answer>" in template.text
        assert "<search>" not in template.text and "<code>" not in template.text and "Example:" not in template.text
        assert ("tools you are given" in template.text) == bool(template.tools)
