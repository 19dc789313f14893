"""The native call format end to end: which chat template it uses, and a rollout with the real tools (a BM25 index,
the code sandbox) whose calls come back as tool messages and whose trajectory the real reward scores."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_search_service import ROWS  # the three passages the search tests index
from transformers import AutoTokenizer

from tapo.cli.preflight import PreflightError, check_call_format
from tapo.config.schema import (
    BM25SearchConfig,
    RewardConfig,
    RolloutConfig,
    SearchCacheConfig,
    SearchConfig,
    TapoConfig,
    ToolsConfig,
)
from tapo.data.schema import Example
from tapo.engines.scripted import ScriptedEngine
from tapo.prompts.native import HERMES_CHATML, STAND_IN_USER, NativeChat, NativeFormatError, assistant_call
from tapo.prompts.templates import render_prompt
from tapo.rewards.compute import RewardFunction
from tapo.rollout.agent_loop import RolloutRunner
from tapo.tools.catalog import resolve_tools
from tapo.tools.search.bm25 import BM25Index

QWEN2_5 = Path(__file__).resolve().parents[1] / "fixtures" / "chat_templates" / "qwen2_5.jinja"
# A template with tools of its own kind: it lists them but writes calls as [CALLS] JSON, not <tool_call>.
OTHER_STYLE = (
    "{% if tools %}TOOLS {{ tools | tojson }}\n{% endif %}{% for m in messages %}{{ m.role }}: {{ m.content }}"
    "{% if m.tool_calls %}[CALLS]{{ m.tool_calls | tojson }}{% endif %}\n{% endfor %}"
)


@pytest.fixture
def fresh_tokenizer(smollm2_path):
    return AutoTokenizer.from_pretrained(smollm2_path)


def test_each_template_gets_its_own_native_format(fresh_tokenizer):
    smollm2 = NativeChat(fresh_tokenizer)  # its template ignores tools: tapo's Hermes-style ChatML
    assert smollm2.fallback and smollm2.template == HERMES_CHATML and smollm2.end_of_turn == "<|im_end|>\n"
    fresh_tokenizer.chat_template = QWEN2_5.read_text(encoding="utf-8")
    qwen = NativeChat(fresh_tokenizer)
    assert not qwen.fallback and qwen.template == fresh_tokenizer.chat_template
    fresh_tokenizer.chat_template = OTHER_STYLE
    with pytest.raises(NativeFormatError, match="writes tool calls in its own way"):
        NativeChat(fresh_tokenizer)


def test_the_config_selects_the_format(tmp_path):
    assert resolve_tools(ToolsConfig()).protocol.call_format == "tags"
    assert resolve_tools(ToolsConfig(call_format="native")).protocol.stop_strings == ("</tool_call>", "</answer>")


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("native") / "index"
    BM25Index.build(ROWS, out)
    return str(out)


@pytest.mark.parametrize("template", ["smollm2", "qwen2.5"])
def test_a_native_rollout_with_the_real_tools_scores_with_the_real_reward(fresh_tokenizer, index_dir, template):
    if template == "qwen2.5":
        fresh_tokenizer.chat_template = QWEN2_5.read_text(encoding="utf-8")
    search = SearchConfig(backend=BM25SearchConfig(index_dir=index_dir), topk=1, cache=SearchCacheConfig(enabled=False))
    catalog = resolve_tools(ToolsConfig(call_format="native", search=search))
    protocol = catalog.protocol
    script = [
        '<think> When was it completed? </think>\n<tool_call>\n{"name": "search", "arguments": {"query": '
        '"When was the Eiffel Tower completed?"}}\n</tool_call>',
        '<tool_call>{"name": "code", "arguments": {"code": "print(1889 - 1800)"}}</tool_call>',
        '<tool_call>{"name": "code", "arguments": {"program": "print(1)"}}</tool_call>',
        "<think> 89 years after 1800. </think>\n<answer> 89 </answer>",
    ]
    config = RolloutConfig(max_turns=4, max_response_tokens=2048)
    runner = RolloutRunner(ScriptedEngine(fresh_tokenizer, script), catalog.build(), config, protocol=protocol)
    example = Example(
        id="q", question="How many years after 1800 was the Eiffel Tower completed?", data_source="nq", golds=["89"]
    )
    try:
        prompt = render_prompt(fresh_tokenizer, example.question, "base", protocol)
        (traj,) = runner.run([prompt], [example], runner.sampling_params(), catalog.enabled)
    finally:
        runner.loop.run(runner.tools.aclose())
    prompt_text = fresh_tokenizer.decode(traj.prompt_ids)
    assert '"name": "code", "description": "Run a Python program' in prompt_text  # the tools' schemas
    assert [t.action for t in traj.turns] == ["search", "code", "invalid", "answer"]
    found, computed, refused = traj.turns[:3]
    assert found.ok and "Doc 1: (Title: Eiffel Tower) The Eiffel Tower in Paris was completed in 1889." in found.output
    assert computed.ok and computed.output == "89"
    assert refused.error == "code needs the argument(s) code" and not refused.ok
    text = traj.response_text
    assert f"<|im_start|>user\n<tool_response>\n{found.output}\n</tool_response><|im_end|>" in text  # tool messages
    assert "<|im_start|>user\n<tool_response>\n89\n</tool_response><|im_end|>\n<|im_start|>assistant\n" in text
    with RewardFunction(RewardConfig(), config.max_response_tokens, protocol) as reward:
        reward.score_trajectories([traj])
    assert traj.scored.format_ok and traj.scored.acc and traj.scored.answer == "89" and traj.scored.score == 1.0
    assert traj.tool_calls == {"search": 1, "code": 1}


def test_a_run_whose_template_native_cannot_use_stops_before_any_work(fresh_tokenizer, smollm2_path, tmp_path):
    fresh_tokenizer.chat_template = OTHER_STYLE
    fresh_tokenizer.save_pretrained(tmp_path / "model")
    shutil.copy(Path(smollm2_path) / "config.json", tmp_path / "model")  # a checkpoint's tokenizer, as a run has
    config = TapoConfig(model={"name": str(tmp_path / "model")}, tools={"call_format": "native"})
    with pytest.raises(PreflightError, match=r"model.name=.*writes tool calls in its own way"):
        check_call_format(config, resolve_tools(config.tools).protocol)
    check_call_format(config.model_copy(update={"tools": ToolsConfig()}), resolve_tools(ToolsConfig()).protocol)


def test_a_template_that_rewrites_earlier_turns_gets_the_message_after_a_stand_in(fresh_tokenizer, caplog):
    # Like reasoning models' templates: an assistant turn's <think> block is dropped once another message follows.
    shown = "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    dropped = "{%- if message.content %}{{- '\\n' + (message.content if loop.last else 'x') }}{%- endif %}"
    assert shown in HERMES_CHATML
    fresh_tokenizer.chat_template = HERMES_CHATML.replace(shown, dropped)
    chat = NativeChat(fresh_tokenizer)  # its probe call has no content, so the start-up check passes
    assert not chat.fallback
    history = [STAND_IN_USER, assistant_call("<think> q </think>", {"name": "search", "arguments": {"query": "q"}})]
    ids = chat.insertion_ids(history, {"role": "tool", "content": "found"}, "</tool_call>", [])
    tool_message = "<|im_start|>user\n<tool_response>\nfound\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    assert fresh_tokenizer.decode(ids) == "<|im_end|>\n" + tool_message
    assert "rewrites earlier turns" in caplog.text
