"""A tool is a user's file: a function or a Tool class outside ``src/``, named in ``tools.extra`` or by an entry
point; the protocol, templates, parsing, format check and eval modes pick it up; a bad one is one line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tapo.cli.preflight import PreflightError, check_tool_definitions
from tapo.config import load_config
from tapo.config.schema import ToolsConfig
from tapo.eval.modes import mode_tools, template_for_mode
from tapo.prompts.native import tool_schemas
from tapo.prompts.templates import get_template
from tapo.protocol import TAPO, Action
from tapo.rewards.format_check import check_format
from tapo.tools.api import ToolDefinitionError, load_tool
from tapo.tools.catalog import resolve_tools

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXTRA = ["user_tools:convert_units", "user_tools:shout", "user_tools:Reverse"]


@pytest.fixture(autouse=True)
def user_path(monkeypatch):
    """The user's tool file is on the Python path, as an installed or working-directory module would be."""
    monkeypatch.syspath_prepend(str(FIXTURES))


def _catalog(*extra: str):
    return resolve_tools(ToolsConfig(enabled=[], extra=list(extra or EXTRA)))


def test_the_spec_derives_from_the_function():
    spec = load_tool("user_tools:convert_units").spec
    assert spec.name == "convert_units"
    assert spec.rule.startswith("Convert a distance between kilometres and miles. Call it with <convert_units> ")
    assert '"value": number' in spec.rule and '"unit": "km"|"mi"' in spec.rule and "<response>" in spec.rule
    assert spec.hint.startswith("If I want to use convert_units, I should put its arguments as a JSON object")
    text_tool = load_tool("user_tools:shout").spec  # one str parameter: the raw text between the tags
    assert "<shout> text </shout>" in text_tool.rule and "put the text between <shout> and </shout>" in text_tool.hint
    assert "<reverse> text </reverse>" in load_tool("user_tools:Reverse").spec.rule


def test_the_protocol_templates_and_modes_know_the_tools():
    protocol = _catalog().protocol
    assert protocol.tool_names == ("search", "code", "convert_units", "shout", "reverse")
    assert protocol.stop_strings[2:] == ("</convert_units>", "</shout>", "</reverse>", "</answer>")
    text = '<think>3 miles</think><convert_units> {"value": 3, "unit": "mi"} </convert_units>'
    assert protocol.parse_action(text) == Action("convert_units", '{"value": 3, "unit": "mi"}')
    assert TAPO.parse_action(text) is None  # TAPO's own protocol is untouched
    response = f"{text}\n\n<response>3 mi = 4.828 km</response>\n\n<answer> 4.828 </answer>"
    assert check_format(response, protocol).ok and not check_format(response).ok
    base = get_template("base", protocol)
    assert "<convert_units>" in base.text and "Example:" in base.text  # TAPO's example shows the format
    assert get_template("compact_shout_only", protocol).tools == {"shout"}
    assert "shout" in mode_tools(protocol)
    assert template_for_mode("compact", "reverse", protocol) == "compact_reverse_only"
    assert "I should put the text between <shout> and </shout>" in protocol.corrective_message(frozenset({"shout"}))


def test_calls_parse_check_and_run_the_function():
    registry = _catalog().build()
    assert registry.names == ["convert_units", "reverse", "shout"]  # enabled: [] leaves TAPO's tools out

    async def calls():
        return await registry.call_many(
            [
                ("convert_units", '{"value": 3, "unit": "mi"}'),
                ("convert_units", "3 miles"),
                ("convert_units", '{"value": 3, "unit": "parsec"}'),
                ("shout", "hello"),
                ("reverse", "abc"),
            ]
        )

    good, not_json, bad_unit, shouted, reversed_ = asyncio.run(calls())
    assert good.ok and good.text == "3.0 mi = 4.828 km"
    assert not not_json.ok and "not JSON" in not_json.text and "JSON object" in not_json.text
    assert not bad_unit.ok and "unit: Input should be 'km' or 'mi'" in bad_unit.text
    assert shouted.text == "HELLO" and reversed_.text == "cba"


def test_a_failing_tool_is_text_for_the_model():
    registry = _catalog("user_tools:flaky").build()
    result = asyncio.run(registry.call("flaky", "x"))
    assert not result.ok and "the unit database is down" in result.text


def test_an_entry_point_names_a_tool(tmp_path, monkeypatch):
    dist = tmp_path / "mytools-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mytools\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[tapo.tools]\nloud = user_tools:shout\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _catalog("loud").protocol.tool_names[-1] == "shout"


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["user_tools:undocumented"], "tool user_tools:undocumented has no docstring"),
        (["user_tools:untyped"], "parameter 'value' has no type hint"),
        (["user_tools:variadic"], "parameter 'values' must be a named argument"),
        (["user_tools:takes_opaque"], "its arguments have no JSON schema the model can write"),
        (["user_tools:code"], "name 'code' is taken by TAPO's built-in tool"),
        (["user_tools:answer"], "name 'answer' is a tag of the protocol itself"),
        (["user_tools:shout", "user_tools:shout"], "name 'shout' is taken by user_tools:shout"),
        (["user_tools:NOT_A_TOOL"], "not a function or a Tool class (int)"),
        (["user_tools:missing"], "user_tools has no 'missing'"),
        (["no_such_module:tool"], "importing no_such_module failed: ModuleNotFoundError"),
        (["no_such_entry_point"], "no `tapo.tools` entry point of that name"),
    ],
)
def test_a_bad_tool_is_refused_with_one_line_naming_it(extra, says):
    config = load_config(None, [f"tools.extra={extra}".replace("'", '"')])
    with pytest.raises(PreflightError) as caught:
        check_tool_definitions(config)
    message = str(caught.value)
    assert says in message and "\n" not in message
    with pytest.raises(ToolDefinitionError):
        resolve_tools(config.tools)


def test_the_default_catalog_is_tapos_protocol():
    catalog = resolve_tools(ToolsConfig())
    assert catalog.protocol is TAPO and catalog.enabled == {"search", "code"}


def test_the_chat_trace_draws_a_users_tool_as_a_call():
    from rich.panel import Panel

    from tapo.rollout.trace import render_text

    protocol = _catalog().protocol
    panels = render_text("<think>loud</think><shout> hello </shout>", "model", protocol).renderables
    assert [p.title for p in panels if isinstance(p, Panel)] == ["reasoning", "shout call"]
    assert [p.title for p in render_text("<shout> hi </shout>", "model").renderables if isinstance(p, Panel)] == []


@pytest.mark.parametrize("command", ["train", "eval", "chat"])
def test_the_commands_stop_on_a_bad_tool_before_any_work(command, tmp_path):
    from typer.testing import CliRunner

    from tapo.cli.main import app

    data = tmp_path / "train.jsonl"
    data.write_text('{"id": "1", "question": "q", "golds": ["a"], "data_source": "default"}\n')
    args = {
        "train": ["train", f"data.train={data}", f"run.output_dir={tmp_path / 'runs'}"],
        "eval": ["eval", "-m", "tiny-random", "-d", str(data), "-o", str(tmp_path / "eval")],
        "chat": ["chat", "-m", "tiny-random", "-q", "hi"],
    }[command]
    result = CliRunner().invoke(app, [*args, 'tools.extra=["user_tools:undocumented"]'])
    assert result.exit_code == 2, result.output
    assert "tool user_tools:undocumented has no docstring" in result.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "eval").exists()


def test_a_users_tools_are_called_in_the_native_format_too():
    catalog = resolve_tools(ToolsConfig(enabled=[], extra=EXTRA, call_format="native"))
    protocol, registry = catalog.protocol, catalog.build()
    schemas = {tool["function"]["name"]: tool["function"] for tool in tool_schemas(protocol, catalog.enabled)}
    assert schemas["convert_units"]["description"] == "Convert a distance between kilometres and miles."
    assert schemas["convert_units"]["parameters"]["properties"]["unit"]["enum"] == ["km", "mi"]
    assert schemas["reverse"]["parameters"]["required"] == ["text"]  # a Tool class's one text argument
    calls = [
        ("convert_units", {"value": 3, "unit": "mi"}, "3.0 mi = 4.828 km"),
        ("shout", {"text": "hi"}, "HI"),
        ("reverse", {"text": "abc"}, "cba"),
        (
            "convert_units",
            {"value": 3, "unit": "ly"},
            'I should write <tool_call>{"name": "convert_units", "arguments"',
        ),
    ]
    try:
        for name, arguments, says in calls:
            action = protocol.parse_action(
                f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"
            )
            assert action is not None and action.kind == name
            assert says in asyncio.run(registry.call(name, action.content)).text
    finally:
        asyncio.run(registry.aclose())
