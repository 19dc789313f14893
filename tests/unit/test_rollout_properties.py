"""Property tests of the agent loop: exact masks, exact sampled ids, aligned lengths, caps, corrective text.

Driven by the scripted engine (any mix of actions and garbage) and by a tiny random Llama (real sampling
through transformers), with real Tool objects behind the real ToolRegistry.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from tapo.config.schema import RolloutConfig
from tapo.engines.base import Generation, SamplingParams
from tapo.engines.forced import ForcedPrefixEngine
from tapo.engines.hf import HFEngine
from tapo.engines.scripted import ScriptedEngine
from tapo.prompts.native import native_chat
from tapo.prompts.templates import get_template, render_prompt
from tapo.protocol import TOOLS, Protocol, corrective_message, format_observation
from tapo.records import Trajectory
from tapo.rollout.agent_loop import RolloutRunner
from tapo.tools.base import ToolResult
from tapo.tools.registry import ToolRegistry


class WordTool:
    """A deterministic tool with a little latency: echoes words of its input (repeated to make long outputs)."""

    def __init__(self, name: str, repeat: int = 1) -> None:
        self.name = name
        self.repeat = repeat

    async def call(self, tool_input: str) -> ToolResult:
        await asyncio.sleep(random.uniform(0, 0.005))
        return ToolResult(f"{self.name}: " + " ".join([tool_input[::-1]] * self.repeat))

    async def aclose(self) -> None:
        return None


class Recording:
    """Wraps an engine and records every generation by the context it continued."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.by_context: dict[tuple[int, ...], Generation] = {}

    async def agenerate(self, prompt: list[int], params: SamplingParams) -> Generation:
        generation = await self.engine.agenerate(prompt, params)
        assert len(generation.token_ids) <= params.max_new_tokens
        self.by_context[tuple(prompt)] = generation
        return generation

    def release(self, ids) -> None:
        self.engine.release(ids)

    def update_weights(self, state_dict) -> None:
        self.engine.update_weights(state_dict)

    def close(self) -> None:
        self.engine.close()


def registry(repeat: int = 1) -> ToolRegistry:
    return ToolRegistry({"search": WordTool("search", repeat), "code": WordTool("code", repeat)})


def runs(mask: list[int]) -> list[tuple[int, int, int]]:
    """(value, start, end) of each maximal run of equal mask values."""
    out: list[tuple[int, int, int]] = []
    for i, value in enumerate(mask):
        if out and out[-1][0] == value and out[-1][2] == i:
            out[-1] = (value, out[-1][1], i + 1)
        else:
            out.append((value, i, i + 1))
    return out


def check_invariants(traj: Trajectory, recorder: Recording, tokenizer, config: RolloutConfig, allowed) -> None:
    n = len(traj.response_ids)
    assert len(traj.model_mask) == n == len(traj.logprobs)
    assert n <= config.max_response_tokens
    assert sum(traj.tool_calls.values()) <= config.max_turns
    assert all((lp is None) == (m == 0) for lp, m in zip(traj.logprobs, traj.model_mask, strict=True))
    inserted = [
        format_observation(t.output) if t.action in ("search", "code") else t.output
        for t in traj.turns
        if t.action != "answer" and t.output
    ]
    segments = runs(traj.model_mask)
    env = [(s, e) for v, s, e in segments if v == 0]
    assert len(env) == len(inserted)
    for (start, end), text in zip(env, inserted, strict=True):
        ids = traj.response_ids[start:end]
        full = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ids == full[: len(ids)]  # only the cap may cut an insertion, and only at the very end
        if end < n or traj.finish_reason != "length":
            assert tokenizer.decode(ids, clean_up_tokenization_spaces=False) == text
    for value, start, end in segments:
        if value == 1:
            sampled = recorder.by_context[tuple(traj.prompt_ids + traj.response_ids[:start])]
            assert traj.response_ids[start:end] == sampled.token_ids
            assert traj.logprobs[start:end] == list(sampled.logprobs or [None] * (end - start))
    for turn in traj.turns:
        if turn.action == "invalid" and turn.output:
            assert turn.output == corrective_message(allowed) and not turn.ok
    assert traj.response_text == tokenizer.decode(traj.response_ids, clean_up_tokenization_spaces=False)
    assert traj.finish_reason in ("answer", "length", "max_turns")


# Turns of either call format: an answer, or any text at all.
answers = st.builds(lambda a: f"<answer> {a} </answer>", st.text("xyz0123 ", max_size=8))
noise = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
# The limits and tool sets a scripted rollout runs under, in either call format.
limits = {
    "max_turns": st.integers(0, 4),
    "max_obs": st.integers(1, 40),
    "repeat": st.integers(1, 20),
    "tools": st.sampled_from([frozenset({"search", "code"}), frozenset({"search"}), frozenset()]),
}

pieces = st.one_of(
    st.builds(lambda q: f"<think>hm</think><search> {q} </search>", st.text("abcdefgh ", min_size=1, max_size=12)),
    st.builds(lambda q: f"<code>print({q})</code> extra", st.integers(0, 999)),
    answers,
    noise,
    st.just("<search>unclosed"),
    st.just("<browse>www</browse>"),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    script=st.lists(pieces, min_size=1, max_size=8), max_response=st.integers(8, 200), group=st.integers(1, 3), **limits
)
def test_scripted_rollouts_keep_every_invariant(
    tokenizer, script, max_turns, max_response, max_obs, repeat, tools, group
):
    config = RolloutConfig(
        max_turns=max_turns, max_response_tokens=max_response, max_obs_tokens=max_obs, max_new_tokens_per_turn=64
    )
    recorder = Recording(ScriptedEngine(tokenizer, script))
    runner = RolloutRunner(recorder, registry(repeat), config)
    prompt = tokenizer("<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    trajectories = runner.run([prompt] * group, [{"i": i} for i in range(group)], runner.sampling_params(), tools)
    for i, traj in enumerate(trajectories):
        assert traj.example == {"i": i}
        check_invariants(traj, recorder, tokenizer, config, tools)
        for turn in traj.turns:
            if turn.action in ("search", "code"):
                assert turn.action in tools and turn.ok
                assert len(tokenizer(turn.output, add_special_tokens=False)["input_ids"]) <= max_obs + 1
    assert all(t.response_ids == trajectories[0].response_ids for t in trajectories)  # a script is deterministic


def test_the_loop_follows_the_protocol_step_by_step(tokenizer):
    script = ["<search> paris </search> ignored", "no action at all", "<code>print(1)</code>", "<answer> 761 </answer>"]
    config = RolloutConfig(max_turns=4)
    runner = RolloutRunner(ScriptedEngine(tokenizer, script), registry(), config)
    traj = runner.run([tokenizer("hi")["input_ids"]], [{}], runner.sampling_params(), frozenset({"search", "code"}))[0]
    assert [t.action for t in traj.turns] == ["search", "invalid", "code", "answer"]
    assert traj.tool_calls == {"search": 1, "code": 1} and traj.finish_reason == "answer"
    assert "ignored" not in traj.response_text  # generation stopped at the first closing tag
    assert "<response>search: sirap</response>" in traj.response_text
    assert traj.turns[1].output == corrective_message(frozenset({"search", "code"}))
    assert traj.turns[-1].content == "761"


def test_each_model_turn_and_each_insertion_is_announced(tokenizer):
    """``on_turn(trajectory, k)`` as model turn k returns from the engine, before its tool call, and again once the
    tool's output (or the corrective message) is inserted: an evaluation's ETA counts the engine's work by it (the
    inserted tokens are the next turn's prefill); then ``on_done`` once."""
    script = ["<search> paris </search>", "no action at all", "<answer> 761 </answer>"]
    runner = RolloutRunner(ScriptedEngine(tokenizer, script), registry(), RolloutConfig(max_turns=4))
    # (event, model turns reported, tool turns by then, tokens after the last model token)
    seen: list[tuple[str, int, int, int]] = []

    def inserted(trajectory: Trajectory) -> int:
        return trajectory.model_mask[::-1].index(1)

    traj = runner.run(
        [tokenizer("hi")["input_ids"]],
        [{}],
        runner.sampling_params(),
        frozenset({"search"}),
        on_done=lambda t: seen.append(("done", 0, len(t.turns), inserted(t))),
        on_turn=lambda t, k: seen.append(("turn", k, len(t.turns), inserted(t))),
    )[0]
    assert [event[:3] for event in seen] == [
        ("turn", 1, 0),
        ("turn", 1, 1),
        ("turn", 2, 1),
        ("turn", 2, 2),
        ("turn", 3, 2),
        ("done", 0, 3),
    ]
    after_turns, after_insertions = [e[3] for e in seen[0:5:2]], [e[3] for e in seen[1:5:2]]
    assert after_turns == [0, 0, 0] and all(n > 0 for n in after_insertions)
    assert [t.action for t in traj.turns] == ["search", "invalid", "answer"]


def test_turn_limit_then_one_tool_less_turn(tokenizer):
    script = ["<search>a</search>"] * 3 + ["<code>print(2)</code>"]
    runner = RolloutRunner(ScriptedEngine(tokenizer, script), registry(), RolloutConfig(max_turns=2))
    traj = runner.run([tokenizer("hi")["input_ids"]], [{}], runner.sampling_params(), frozenset({"search", "code"}))[0]
    assert traj.tool_calls == {"search": 2} and traj.finish_reason == "max_turns"
    assert traj.turns[-1].action == "invalid" and "tools are off" in traj.turns[-1].error


def test_disallowed_tool_and_missing_registry_get_the_corrective_message(tokenizer):
    script = ["<code>print(1)</code>", "<answer>1</answer>"]
    for tools, allowed in ((registry(), frozenset({"search"})), (None, frozenset({"search", "code"}))):
        runner = RolloutRunner(ScriptedEngine(tokenizer, script), tools, RolloutConfig())
        traj = runner.run([tokenizer("hi")["input_ids"]], [{}], runner.sampling_params(), allowed)[0]
        assert traj.turns[0].action == "invalid" and "not available" in traj.turns[0].error
        assert traj.tool_calls == {} and traj.finish_reason == "answer"


def test_tool_failures_become_text_and_the_trajectory_goes_on(tokenizer):
    class Broken(WordTool):
        async def call(self, tool_input: str) -> ToolResult:
            raise RuntimeError("index missing")

    tools = ToolRegistry({"search": Broken("search")})
    script = ["<search>x</search>", "<answer>y</answer>"]
    runner = RolloutRunner(ScriptedEngine(tokenizer, script), tools, RolloutConfig())
    traj = runner.run([tokenizer("hi")["input_ids"]], [{}], runner.sampling_params(), frozenset({"search"}))[0]
    assert not traj.turns[0].ok and "index missing" in traj.turns[0].output
    assert traj.tool_failures == 1 and traj.finish_reason == "answer"


def test_slow_tool_calls_do_not_stall_other_trajectories(tokenizer):
    class Sleepy(WordTool):
        async def call(self, tool_input: str) -> ToolResult:
            await asyncio.sleep(float(tool_input))
            return ToolResult("done")

    engine = ScriptedEngine(tokenizer, ["<search>0.4</search>", "<answer>a</answer>"])
    runner = RolloutRunner(engine, ToolRegistry({"search": Sleepy("search")}), RolloutConfig())
    prompts = [tokenizer(f"prompt {i}")["input_ids"] for i in range(4)]
    loop = asyncio.new_event_loop()
    start = loop.time()
    trajectories = loop.run_until_complete(
        runner.arun(prompts, [{}] * 4, runner.sampling_params(), frozenset({"search"}))
    )
    elapsed = loop.time() - start
    loop.close()
    assert all(t.finish_reason == "answer" for t in trajectories)
    assert elapsed < 4 * 0.4  # the four tool calls overlapped


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), max_turns=st.integers(1, 2), max_response=st.integers(16, 48))
def test_tiny_model_rollouts_keep_every_invariant(tokenizer, tiny_model, seed, max_turns, max_response):
    # A random model rarely writes tags: the forced action ends the prompt, then every turn is sampled freely.
    config = RolloutConfig(
        max_turns=max_turns, max_response_tokens=max_response, max_obs_tokens=12, max_new_tokens_per_turn=8
    )
    recorder = Recording(HFEngine(tiny_model, tokenizer, batch_size=4))
    runner = RolloutRunner(recorder, registry(repeat=8), config)
    forced = tokenizer("<search> a b </search>")["input_ids"]
    prompts = [tokenizer(f"question {i}")["input_ids"] + forced for i in range(2)]
    trajectories = runner.run(prompts, [{}] * 2, runner.sampling_params(seed=seed), frozenset({"search", "code"}))
    for traj in trajectories:
        check_invariants(traj, recorder, tokenizer, config, frozenset({"search", "code"}))
        assert traj.finish_reason in ("length", "max_turns")
        assert any(t.action == "invalid" for t in traj.turns)


# --- the native call format (tools.call_format: native) ------------------------------------------------------------
# The same invariants through a chat template: SmolLM2's has no tool support, so its native format is tapo's
# Hermes-style ChatML fallback; Qwen2.5's own template (tests/fixtures/chat_templates) runs on the SmolLM2 tokenizer.

NATIVE = Protocol(TOOLS, "native")
QWEN2_5 = Path(__file__).resolve().parents[1] / "fixtures" / "chat_templates" / "qwen2_5.jinja"
HEADER, END = "<|im_start|>assistant\n", "<|im_end|>"


@pytest.fixture(scope="module", params=["smollm2", "qwen2.5"])
def chat_tokenizer(request, smollm2_path):
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)  # a tokenizer of its own: its native format is cached
    if request.param == "qwen2.5":
        tokenizer.chat_template = QWEN2_5.read_text(encoding="utf-8")
    assert native_chat(tokenizer).fallback == (request.param == "smollm2")
    return tokenizer


def native_call(name: str, arguments: dict) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def expected_insertion(model_text: str, turn) -> str:
    """What ChatML templates (Qwen2.5's and tapo's fallback alike) render after a model turn: the rest of its end
    of turn, the result (or why the call failed) in a tool message, or the corrective note in a user message."""
    end = "\n" if model_text.endswith(END) else f"{END}\n"
    if turn.error == "no valid action":
        return f"{end}<|im_start|>user\n{turn.output}{END}\n{HEADER}"
    content = NATIVE.observation(turn.output) if turn.action in ("search", "code") else turn.output
    return f"{end}<|im_start|>user\n<tool_response>\n{content}\n</tool_response>{END}\n{HEADER}"


def check_native_invariants(traj: Trajectory, recorder: Recording, tokenizer, config: RolloutConfig, allowed) -> None:
    n = len(traj.response_ids)
    assert len(traj.model_mask) == n == len(traj.logprobs) and n <= config.max_response_tokens
    assert all((lp is None) == (m == 0) for lp, m in zip(traj.logprobs, traj.model_mask, strict=True))
    segments = runs(traj.model_mask)
    texts: list[str] = []
    for value, start, end in segments:
        if value == 1:  # exactly the ids the engine sampled for this context
            sampled = recorder.by_context[tuple(traj.prompt_ids + traj.response_ids[:start])]
            assert traj.response_ids[start:end] == sampled.token_ids
            texts.append(tokenizer.decode(sampled.token_ids, skip_special_tokens=False))
    answered = [t for t in traj.turns if t.output]
    inserted = [(s, e) for v, s, e in segments if v == 0]
    assert len(inserted) == len(answered) <= len(texts)
    for (start, end), turn, model_text in zip(inserted, answered, texts, strict=False):
        ids = traj.response_ids[start:end]
        text = expected_insertion(model_text, turn)
        assert ids == tokenizer(text, add_special_tokens=False)["input_ids"][: len(ids)]  # only the cap cuts
        if end < n or traj.finish_reason != "length":
            assert tokenizer.decode(ids, clean_up_tokenization_spaces=False) == text
        if turn.action == "invalid":
            assert not turn.ok and turn.error
            expected = NATIVE.corrective_message(allowed) if turn.error == "no valid action" else None
            assert turn.output == (expected or NATIVE.call_error(turn.error, allowed))
    assert traj.response_text == tokenizer.decode(traj.response_ids, clean_up_tokenization_spaces=False)


native_pieces = st.one_of(
    st.builds(
        lambda q: "<think>hm</think>\n" + native_call("search", {"query": q}), st.text("abcdefgh <>/", max_size=12)
    ),
    st.builds(lambda k: native_call("code", {"code": f"print({k})"}) + " extra", st.integers(0, 999)),
    answers,
    noise,
    st.just('<tool_call>{"name": "search", "arguments": {"query": </tool_call>'),  # not JSON
    st.just(native_call("browse", {"url": "x"})),  # no such tool
    st.just(native_call("search", {"q": "x"})),  # a wrong argument
    st.just("<search> the tags are plain text here </search>"),
    st.just("<tool_call>unclosed"),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(native_pieces, min_size=1, max_size=8), max_response=st.integers(8, 300), **limits)
def test_native_rollouts_keep_every_invariant(chat_tokenizer, script, max_turns, max_response, max_obs, repeat, tools):
    config = RolloutConfig(
        max_turns=max_turns, max_response_tokens=max_response, max_obs_tokens=max_obs, max_new_tokens_per_turn=64
    )
    recorder = Recording(ScriptedEngine(chat_tokenizer, script))
    runner = RolloutRunner(recorder, registry(repeat), config, protocol=NATIVE)
    prompt = render_prompt(chat_tokenizer, "Q?", "base", NATIVE)
    (traj,) = runner.run([prompt], [None], runner.sampling_params(), tools)
    check_native_invariants(traj, recorder, chat_tokenizer, config, tools)
    assert all(turn.action in tools for turn in traj.turns if turn.action in ("search", "code"))


def test_a_native_conversation_is_the_chat_templates_own_render(chat_tokenizer):
    """Model turns written as the template writes calls: the whole token stream is the template's render of the
    conversation (prompt with the tools' schemas, calls, tool messages, headers), token for token."""
    calls = [("search", {"query": "eiffel tower"}), ("code", {"code": "print(6 * 7)"})]
    script = [native_call(name, arguments) for name, arguments in calls] + ["<answer> 42 </answer>"]
    runner = RolloutRunner(ScriptedEngine(chat_tokenizer, script), registry(), RolloutConfig(), protocol=NATIVE)
    prompt = render_prompt(chat_tokenizer, "What is 6 times 7?", "compact", NATIVE)
    (traj,) = runner.run([prompt], [None], runner.sampling_params(), frozenset({"search", "code"}))
    assert [t.action for t in traj.turns] == ["search", "code", "answer"] and traj.finish_reason == "answer"
    assert [t.output for t in traj.turns[:2]] == ["search: rewot leffie", "code: )7 * 6(tnirp"]
    messages = [{"role": "user", "content": get_template("compact", NATIVE).fill("What is 6 times 7?")}]
    for (name, arguments), turn in zip(calls, traj.turns, strict=False):
        call = {"type": "function", "function": {"name": name, "arguments": arguments}}
        messages += [
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": turn.output},
        ]
    schemas = [
        {"type": "function", "function": {"name": s.name, "description": s.description, "parameters": s.schema}}
        for s in TOOLS
    ]
    template = native_chat(chat_tokenizer).template  # SmolLM2: tapo's fallback; Qwen2.5: its own
    rendered = chat_tokenizer.apply_chat_template(
        messages, tools=schemas, chat_template=template, tokenize=False, add_generation_prompt=True
    )
    assert "<tools>" in rendered and '"name": "search"' in rendered.split("<|im_start|>user")[0]
    expected = chat_tokenizer(rendered + "<answer> 42 </answer>", add_special_tokens=False)["input_ids"]
    assert traj.prompt_ids + traj.response_ids == expected
    sampled = [i for i, m in zip(traj.response_ids, traj.model_mask, strict=True) if m]
    assert chat_tokenizer.decode(sampled) == "".join(script)  # the mask covers the model's tokens, and only them


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16))
def test_tiny_model_native_rollouts_keep_every_invariant(chat_tokenizer, tiny_model, one_thread, seed):
    # The first turn is a forced native call (a random model writes none), every later turn is sampled.
    config = RolloutConfig(max_turns=2, max_response_tokens=128, max_obs_tokens=12, max_new_tokens_per_turn=32)
    engine = ForcedPrefixEngine(
        HFEngine(tiny_model, chat_tokenizer, batch_size=4), [native_call("search", {"query": "a b"})]
    )
    recorder = Recording(engine)
    runner = RolloutRunner(recorder, registry(repeat=8), config, protocol=NATIVE)
    prompt = render_prompt(chat_tokenizer, "question", "minimal", NATIVE)
    (traj,) = runner.run([prompt], [None], runner.sampling_params(seed=seed), frozenset({"search", "code"}))
    check_native_invariants(traj, recorder, chat_tokenizer, config, frozenset({"search", "code"}))
    assert traj.turns[0].action == "search" and traj.turns[0].output.startswith("search: b a b a")
