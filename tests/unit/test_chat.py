"""`tapo chat`: the trace of a real rollout (tiny model, real code sandbox) shown turn by turn, one shot or looped."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from tapo.cli.main import app
from tapo.io.atomic import read_jsonl
from tapo.protocol import TAGS, Segment, segments
from tapo.records import Trajectory

runner = CliRunner()
# Short turns (forced ones obey the cap too) keep the tiny model fast; only the code tool (search needs an index).
FAST = ["rollout.max_new_tokens_per_turn=24", "rollout.max_turns=1", "tools.enabled=[code]"]
FORCE = ["--force", "<think>multiply</think> <code>print(6 * 7)</code>"]

words = st.text(alphabet="abcdefghij 0123456789+*", min_size=1, max_size=20).map(str.strip).filter(bool)


@given(st.lists(st.tuples(st.sampled_from((None, *TAGS)), words), min_size=1, max_size=6))
def test_segments_recover_the_blocks_in_order(parts):
    # Adjacent untagged pieces merge into one, as they would in a real response.
    expected: list[Segment] = []
    for tag, text in parts:
        if tag is None and expected and expected[-1].tag is None:
            expected[-1] = Segment(None, f"{expected[-1].text}\n{text}")
        else:
            expected.append(Segment(tag, text))
    text = "\n".join(text if tag is None else f"<{tag}>{text}</{tag}>" for tag, text in parts)
    assert segments(text) == expected


def test_an_unclosed_block_runs_to_the_end_and_other_tags_stay_text():
    assert segments("<think>still thinking") == [Segment("think", "still thinking")]
    corrective = "put the query between <search> and </search>. Try again."
    assert segments(corrective, ("response",)) == [Segment(None, corrective)]


def test_one_shot_shows_reasoning_tool_call_output_and_summary(tiny_checkpoint, tmp_path):
    saved = tmp_path / "trajectories.jsonl"
    question = ["-q", "What is 6 times 7?", "--save", str(saved)]
    result = runner.invoke(app, ["chat", "--model", tiny_checkpoint, *question, *FORCE, *FAST])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.index("reasoning") < out.index("code call") < out.index("tool output") < out.index("finished:")
    assert "42" in out.split("tool output", 1)[1]
    assert "tool calls: code x1" in out
    (row,) = read_jsonl(saved)  # the trainer's and the evaluator's row schema
    trajectory = Trajectory.from_row(row)
    assert trajectory.tool_calls == {"code": 1} and "<response>42</response>" in trajectory.response_text


def test_interactive_loop_answers_each_question_until_an_empty_line(tiny_checkpoint):
    result = runner.invoke(app, ["chat", "--model", tiny_checkpoint, *FORCE, *FAST], input="first\nsecond\n\nthird\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("question>") == 3  # the empty line ends the loop: "third" is never asked
    assert result.stdout.count("finished:") == 2 and result.stdout.count("tool calls: code x1") == 2


def test_end_of_input_ends_the_loop(tiny_checkpoint):
    result = runner.invoke(app, ["chat", "--model", tiny_checkpoint, *FAST, "rollout.max_turns=0"], input="only\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("finished:") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--template", "no-such-template"], "no-such-template"),
        (["rollout.max_turns=-1"], "max_turns"),
    ],
)
def test_bad_input_exits_2_with_one_line(tiny_checkpoint, args, message):
    result = runner.invoke(app, ["chat", "--model", tiny_checkpoint, "-q", "x", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_a_missing_model_exits_2(tmp_path):
    result = runner.invoke(app, ["chat", "--model", str(tmp_path / "nothing"), "-q", "x"])
    assert result.exit_code == 2 and "no such directory" in result.output


@pytest.mark.integration
@pytest.mark.slow
def test_smollm2_writes_after_a_forced_code_call(smollm2_path):
    args = ["chat", "--model", smollm2_path, "-q", "What is 6 times 7?", *FORCE, *FAST[1:], "--template", "compact"]
    result = runner.invoke(app, [*args, "rollout.max_new_tokens_per_turn=32"])
    assert result.exit_code == 0, result.output
    assert "tool output" in result.stdout and "finished:" in result.stdout


def test_the_hf_engine_streams_exactly_the_tokens_it_returns(tiny_model, tokenizer):
    from tapo.engines.base import SamplingParams
    from tapo.engines.hf import HFEngine

    engine = HFEngine(tiny_model, tokenizer)
    streamed: list[int] = []
    engine.on_tokens = streamed.extend
    [gen] = engine.generate([tokenizer.encode("What is 6 times 7?")], SamplingParams(max_new_tokens=12, seed=0))
    assert streamed == gen.token_ids and len(streamed) == 12
    streamed.clear()
    engine.generate([[1, 2], [3, 4]], SamplingParams(max_new_tokens=4, seed=0))
    assert streamed == []  # a batch of several is never streamed (its rows would interleave)


@pytest.mark.parametrize("terminal", [False, True])
def test_a_streamed_turn_is_shown_once_when_it_is_done(tokenizer, terminal):
    import io

    from rich.console import Console

    from tapo.rollout.trace import TraceRenderer

    out = io.StringIO()
    renderer = TraceRenderer(Console(file=out, force_terminal=terminal, width=60), tokenizer)
    text = "<think> six sevens </think> <answer> 42 </answer>"
    ids = tokenizer.encode(text, add_special_tokens=False)
    for token in ids:
        renderer.stream([token])
    renderer(0, "model", text)
    shown = out.getvalue()
    if terminal:  # the live view is drawn while the turn is sampled, then erased line by line
        live, final = shown.rsplit("\x1b[2K", 1)
        assert "six sevens" in live
    else:  # no live view where nothing can be redrawn (a pipe, a file)
        final = shown
    assert final.count("reasoning") == 1 and final.count("answer") == 1 and final.count("42") == 1
