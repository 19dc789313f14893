"""Prompt templates (docs/method.md §5): one user message with numbered rules, an optional worked example, the question.

A template knows which tools it allows, so the rollout can refuse a tag the prompt never offered (the
ablations: search only, code only, no tools). Prompts are rendered once through the model's own chat
template and handed to the engine as token ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tapo.config.bounded_yaml import load_bounded
from tapo.protocol import TOOL_NAMES, TOOLS

QUESTION = "{question}"

_THINK = (
    "Reason step by step inside <think> and </think> every time you get new information, "
    "and find out what knowledge you are missing."
)
_ANSWER = (
    "When you know the answer, give only the answer between <answer> and </answer>, "
    "without explanation, for example <answer> Beijing </answer>."
)

_EXAMPLES = {
    frozenset({"search", "code"}): """\
Question: How many years passed between the founding of Marie Curie's doctoral university and her chemistry Nobel?
<think> I need the university where Marie Curie earned her doctorate. </think>
<search> Marie Curie doctorate university </search>
<response>Doc 1: (Title: Marie Curie) Doctorate: University of Paris, 1903. Nobel Prize in Chemistry: 1911.</response>
<think> The University of Paris. Now I need its founding year. </think>
<search> University of Paris founding year </search>
<response>Doc 1: (Title: University of Paris) The University of Paris was founded around 1150.</response>
<think> The prize came in 1911, so I compute 1911 - 1150. </think>
<code>
print(1911 - 1150)
</code>
<response>761</response>
<think> 761 years passed. </think>
<answer> 761 </answer>""",
    frozenset({"search"}): """\
Question: In which country was the director of the film Parasite born?
<think> I need the director of Parasite. </think>
<search> Parasite film director </search>
<response>Doc 1: (Title: Parasite (2019 film)) Parasite is a 2019 film directed by Bong Joon-ho.</response>
<think> Bong Joon-ho. Where was he born? </think>
<search> Bong Joon-ho birthplace </search>
<response>Doc 1: (Title: Bong Joon-ho) Bong Joon-ho was born in Daegu, South Korea.</response>
<answer> South Korea </answer>""",
    frozenset({"code"}): """\
Question: What is the sum of the squares of the first 20 positive integers?
<think> I compute it exactly with Python. </think>
<code>
print(sum(i * i for i in range(1, 21)))
</code>
<response>2870</response>
<answer> 2870 </answer>""",
    frozenset(): """\
Question: What is 12 times 7?
<think> 12 times 7 is 84. </think>
<answer> 84 </answer>""",
}


@dataclass(frozen=True)
class Template:
    """A user-message text with a ``{question}`` placeholder and the tools it tells the model about."""

    name: str
    text: str
    tools: frozenset[str]

    def __post_init__(self) -> None:
        if QUESTION not in self.text:
            raise ValueError(f"template {self.name!r} has no {QUESTION} placeholder")
        unknown = self.tools - set(TOOL_NAMES)
        if unknown:
            raise ValueError(f"template {self.name!r} names unknown tools {sorted(unknown)}; known: {list(TOOL_NAMES)}")

    def fill(self, question: str) -> str:
        # str.replace, not str.format: templates contain code with braces.
        return self.text.replace(QUESTION, question.strip())


def _instruction(tools: frozenset[str], example: bool) -> str:
    rules = [_THINK, *(tool.rule for tool in TOOLS if tool.name in tools), _ANSWER]
    numbered = "\n".join(f"{i}. {rule}" for i, rule in enumerate(rules, 1))
    head = "Answer the given question. Follow these rules:\n" + numbered
    # a tool set without a worked example (a new tool's combinations) gets the rules alone
    shown = f"\n\nExample:\n{_EXAMPLES[tools]}" if example and tools in _EXAMPLES else ""
    return f"{head}{shown}\n\nQuestion: {QUESTION}"


def _terse_instruction(tools: frozenset[str]) -> str:
    """The four rules in three sentences: prompt tokens dominate the cost of a CPU training step."""
    tool_rules = " ".join(tool.terse_rule for tool in TOOLS if tool.name in tools)
    results = " Results come back in <response> </response>." if tools else ""
    return (
        f"Answer the question. Think in <think> </think>. {tool_rules}{results} "
        f"Give only the final answer in <answer> </answer>.\n\nQuestion: {QUESTION}"
    ).replace("  ", " ")


# Tool sets of the ablations, by the suffix their template names carry ("base" has all tools).
_TOOL_SETS = {
    "": frozenset(TOOL_NAMES),
    **{f"{name}_only": frozenset({name}) for name in TOOL_NAMES},
    "no_tools": frozenset(),
}
# Template families: TAPO's (docs/method.md §5: rules + an example), "compact" (rules only), "minimal" (terse rules).
_FAMILIES = {
    "": lambda tools: _instruction(tools, example=True),
    "compact": lambda tools: _instruction(tools, example=False),
    "minimal": _terse_instruction,
}


def _family_name(family: str, suffix: str) -> str:
    return "_".join(part for part in (family, suffix) if part) or "base"


TEMPLATES: dict[str, Template] = {
    _family_name(family, suffix): Template(_family_name(family, suffix), text(tools), tools)
    for family, text in _FAMILIES.items()
    for suffix, tools in _TOOL_SETS.items()
}


def register_template(name: str, text: str, tools: frozenset[str] | set[str] | list[str]) -> Template:
    """Add (or replace) a named template; ``text`` must contain ``{question}``."""
    template = Template(name, text, frozenset(tools))
    TEMPLATES[name] = template
    return template


def load_template_file(path: str | Path) -> Template:
    """A template from a file: YAML/JSON ``{text, tools}``, or plain text whose tools are the tags it mentions."""
    file = Path(path)
    raw = file.read_text(encoding="utf-8")
    if file.suffix in (".yaml", ".yml", ".json"):
        data: Any = json.loads(raw) if file.suffix == ".json" else load_bounded(raw)
        if not isinstance(data, dict) or "text" not in data:
            raise ValueError(f"{file}: a template file needs a 'text' field (and optionally 'tools')")
        tools = frozenset(data.get("tools", [t for t in TOOL_NAMES if f"<{t}>" in data["text"]]))
        return Template(str(file), data["text"], tools)
    return Template(str(file), raw, frozenset(t for t in TOOL_NAMES if f"<{t}>" in raw))


def get_template(name: str) -> Template:
    """A registered template by name, or one loaded from a file path."""
    if name in TEMPLATES:
        return TEMPLATES[name]
    if Path(name).expanduser().is_file():
        return load_template_file(Path(name).expanduser())
    raise KeyError(f"unknown prompt template {name!r}; known: {sorted(TEMPLATES)} (or a path to a template file)")


def allowed_tools(template: str) -> frozenset[str]:
    return get_template(template).tools


def render_prompt(tokenizer: Any, question: str, template: str) -> list[int]:
    """Prompt token ids: the filled template as one user message through the model's chat template."""
    messages = [{"role": "user", "content": get_template(template).fill(question)}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
