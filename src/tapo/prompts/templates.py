"""Prompt templates (docs/method.md §5): one user message with numbered rules, an optional worked example, the question.

A template knows which tools it allows, so the rollout can refuse a tag the prompt never offered (the
ablations: search only, code only, no tools). Prompts are rendered once through the model's own chat
template and handed to the engine as token ids.

The families and their ablations are functions of the run's protocol (:class:`tapo.protocol.Protocol`): a user's
tool gets its rule in every family and a ``<family>_<tool>_only`` template, with TAPO's default templates unchanged.
In the native call format the chat template lists the tools (``tapo.prompts.native``), so a family's rules say only
to call them, and no family shows a worked example (TAPO's are written in tags).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tapo.config.bounded_yaml import load_bounded
from tapo.prompts.native import native_chat, tool_schemas
from tapo.protocol import TAPO, Protocol

QUESTION = "{question}"

_THINK = (
    "Reason step by step inside <think> and </think> every time you get new information, "
    "and find out what knowledge you are missing."
)
_ANSWER = (
    "When you know the answer, give only the answer between <answer> and </answer>, "
    "without explanation, for example <answer> Beijing </answer>."
)

# The native format's one tool rule: the chat template lists the tools, their descriptions and how to call them.
_NATIVE_TOOLS = (
    "If you lack knowledge or need to compute, call one of the tools you are given; its result comes back in a tool "
    "message. You may call tools as often as you need."
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

    def check_tools(self, protocol: Protocol) -> Template:
        """This template, if every tool it names is one of ``protocol``'s; else a ValueError naming them."""
        unknown = self.tools - set(protocol.tool_names)
        if unknown:
            known = list(protocol.tool_names)
            raise ValueError(f"template {self.name!r} names unknown tools {sorted(unknown)}; known: {known}")
        return self

    def fill(self, question: str) -> str:
        # str.replace, not str.format: templates contain code with braces.
        return self.text.replace(QUESTION, question.strip())


def _example(tools: frozenset[str]) -> str | None:
    """The worked example of a tool set: TAPO's for its tools; with a user's tool, the example of TAPO's tools in
    the set (it shows the format; the rules offer the rest); a user's tool alone has none."""
    if tools in _EXAMPLES:
        return _EXAMPLES[tools]
    return _EXAMPLES.get(tools & frozenset(TAPO.tool_names)) if tools & frozenset(TAPO.tool_names) else None


def _instruction(protocol: Protocol, tools: frozenset[str], example: bool) -> str:
    if protocol.native:
        rules = [_THINK, *([_NATIVE_TOOLS] if tools else []), _ANSWER]
    else:
        rules = [_THINK, *(tool.rule for tool in protocol.tools if tool.name in tools), _ANSWER]
    numbered = "\n".join(f"{i}. {rule}" for i, rule in enumerate(rules, 1))
    head = "Answer the given question. Follow these rules:\n" + numbered
    shown = f"\n\nExample:\n{worked}" if example and not protocol.native and (worked := _example(tools)) else ""
    return f"{head}{shown}\n\nQuestion: {QUESTION}"


def _terse_instruction(protocol: Protocol, tools: frozenset[str]) -> str:
    """The four rules in three sentences: prompt tokens dominate the cost of a CPU training step."""
    if protocol.native:
        tool_rules, results = ("Call the tools you are given when you need them." if tools else ""), ""
    else:
        tool_rules = " ".join(tool.terse_rule for tool in protocol.tools if tool.name in tools)
        results = " Results come back in <response> </response>." if tools else ""
    return (
        f"Answer the question. Think in <think> </think>. {tool_rules}{results} "
        f"Give only the final answer in <answer> </answer>.\n\nQuestion: {QUESTION}"
    ).replace("  ", " ")


def _tool_sets(protocol: Protocol) -> dict[str, frozenset[str]]:
    """Tool sets of the ablations, by the suffix their template names carry ("base" has all tools)."""
    return {
        "": frozenset(protocol.tool_names),
        **{f"{name}_only": frozenset({name}) for name in protocol.tool_names},
        "no_tools": frozenset(),
    }


# Template families: TAPO's (docs/method.md §5: rules + an example), "compact" (rules only), "minimal" (terse rules).
_FAMILIES = {
    "": lambda protocol, tools: _instruction(protocol, tools, example=True),
    "compact": lambda protocol, tools: _instruction(protocol, tools, example=False),
    "minimal": _terse_instruction,
}


def _family_name(family: str, suffix: str) -> str:
    return "_".join(part for part in (family, suffix) if part) or "base"


@lru_cache(maxsize=8)
def family_templates(protocol: Protocol) -> dict[str, Template]:
    """Every family's template for every tool set of ``protocol`` (TAPO's: ``base``, ``compact_code_only``, ...)."""
    return {
        _family_name(family, suffix): Template(_family_name(family, suffix), text(protocol, tools), tools)
        for family, text in _FAMILIES.items()
        for suffix, tools in _tool_sets(protocol).items()
    }


# TAPO's families, plus the templates registered by name.
TEMPLATES: dict[str, Template] = dict(family_templates(TAPO))


def register_template(
    name: str, text: str, tools: frozenset[str] | set[str] | list[str], protocol: Protocol = TAPO
) -> Template:
    """Add (or replace) a named template; ``text`` must contain ``{question}``, ``tools`` be ``protocol``'s."""
    template = Template(name, text, frozenset(tools)).check_tools(protocol)
    TEMPLATES[name] = template
    return template


def load_template_file(path: str | Path, protocol: Protocol = TAPO) -> Template:
    """A template from a file: YAML/JSON ``{text, tools}``, or plain text whose tools are the tags it mentions."""
    file = Path(path)
    raw = file.read_text(encoding="utf-8")
    names = protocol.tool_names
    if file.suffix in (".yaml", ".yml", ".json"):
        data: Any = json.loads(raw) if file.suffix == ".json" else load_bounded(raw)
        if not isinstance(data, dict) or "text" not in data:
            raise ValueError(f"{file}: a template file needs a 'text' field (and optionally 'tools')")
        tools = frozenset(data.get("tools", [t for t in names if f"<{t}>" in data["text"]]))
        return Template(str(file), data["text"], tools).check_tools(protocol)
    return Template(str(file), raw, frozenset(t for t in names if f"<{t}>" in raw))


def get_template(name: str, protocol: Protocol = TAPO) -> Template:
    """A template by name (``protocol``'s families first, then the registered ones), or one loaded from a file."""
    found = family_templates(protocol).get(name) or TEMPLATES.get(name)
    if found is not None:
        return found.check_tools(protocol)
    if Path(name).expanduser().is_file():
        return load_template_file(Path(name).expanduser(), protocol)
    known = sorted({*family_templates(protocol), *TEMPLATES})
    raise KeyError(f"unknown prompt template {name!r}; known: {known} (or a path to a template file)")


def allowed_tools(template: str, protocol: Protocol = TAPO) -> frozenset[str]:
    return get_template(template, protocol).tools


def render_prompt(tokenizer: Any, question: str, template: str, protocol: Protocol = TAPO) -> list[int]:
    """Prompt token ids: the filled template as one user message through the model's chat template (native call
    format: with the template's tools' JSON schemas, ``tapo.prompts.native``)."""
    chosen = get_template(template, protocol)
    messages = [{"role": "user", "content": chosen.fill(question)}]
    if protocol.native:
        return native_chat(tokenizer).prompt_ids(messages, tool_schemas(protocol, chosen.tools))
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
