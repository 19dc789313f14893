"""Issue 26's acceptance: a tool from a file outside ``src/`` (tests/fixtures/user_tools.py) and an MCP server's
tool (tests/fixtures/mcp_server.py, started on stdio) in a seeded tiny training step and an evaluation that call
both, through the config alone: no file under ``src/`` names either tool.

The model turns are scripted (:class:`ScriptedEngine`) so the calls are certain; everything else is the real run:
``build_rl_run`` over a tiny random checkpoint, the config's reward (the format check knows the new tags), the
registry, the metrics, ``evaluate`` with its trajectories and report rows.
"""

from __future__ import annotations

import sys
from itertools import count
from pathlib import Path

import pytest

from tapo.config import load_config
from tapo.data.io import save_examples
from tapo.data.schema import Example
from tapo.engines.scripted import ScriptedEngine
from tapo.eval.render import render_trajectory
from tapo.eval.runner import evaluate
from tapo.io.runs import RunDir
from tapo.train.run import build_rl_run
from tapo.train.setup import make_accelerator

pytest.importorskip("mcp")
pytestmark = [pytest.mark.timeout(600), pytest.mark.usefixtures("one_thread")]

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"
TOOLS = ("convert_units", "lookup_capital")
CONVERT = '<think> miles first </think><convert_units> {"value": 3, "unit": "mi"} </convert_units>'
LOOKUP = "<lookup_capital> France </lookup_capital>"


def _script():
    """Two tool calls, then an answer: right for every other trajectory, so groups have a reward to learn from."""
    answers = count()

    def turn(context: list[int], index: int) -> str:
        if index < 2:
            return (CONVERT, LOOKUP)[index]
        return "<answer> Paris </answer>" if next(answers) % 2 == 0 else "<answer> Lyon </answer>"

    return turn


@pytest.fixture
def config(tmp_path, tiny_checkpoint, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS / "fixtures"))  # the user's module, as an installed one would be
    from tapo.tools.search.bm25 import BM25Index  # an evaluation's "all" mode offers TAPO's tools too

    BM25Index.build([{"id": "1", "title": "France", "text": "Paris is the capital of France."}], tmp_path / "index")
    server = {"command": [sys.executable, str(TESTS / "fixtures" / "mcp_server.py")], "tools": ["lookup_capital"]}
    return load_config(
        None,
        [
            f"model.name={tiny_checkpoint}",
            f"run.output_dir={tmp_path}",
            "run.name=user-tools",
            "run.seed=7",
            "tools.enabled=[]",  # TAPO's tools off in training: the run's tools are the user's
            f"tools.search.backend.index_dir={tmp_path / 'index'}",
            'tools.extra=["user_tools:convert_units"]',
            f"tools.mcp=[{server}]".replace("'", '"'),
            "tools.call_timeout_s=60",
            "data.template=compact",
            "trainer.max_steps=1",
            "trainer.prompts_per_step=2",
            "trainer.group_size=2",
            "trainer.mini_batch_size=4",
            "trainer.micro_batch_size=4",
            "trainer.filter_groups=false",
            "rollout.max_turns=3",
            "rollout.max_new_tokens_per_turn=48",
            "rollout.max_response_tokens=256",
            "reward.overlong.enabled=false",
        ],
    )


def _examples() -> list[Example]:
    question = "What is the capital of the country whose distances are in km?"
    return [Example(id=f"q{i}", question=question, data_source="default", golds=["Paris"]) for i in range(2)]


def _check_calls(trajectory) -> None:
    calls = [(turn.action, turn.ok, turn.output) for turn in trajectory.turns if turn.action in TOOLS]
    assert calls == [("convert_units", True, "3.0 mi = 4.828 km"), ("lookup_capital", True, "Paris")]
    assert "<response>3.0 mi = 4.828 km</response>" in trajectory.response_text
    assert trajectory.scored.format_ok, trajectory.scored.format_error  # the format check knows the new tags


def test_a_users_tool_and_an_mcp_tool_train_and_evaluate(config, tmp_path):
    run = RunDir.create(config)
    accelerator = make_accelerator(config, run.root)
    examples = _examples()
    with build_rl_run(
        config, run, accelerator, examples, make_engine=lambda _model, tokenizer: ScriptedEngine(tokenizer, _script())
    ) as rl:
        assert rl.source.protocol.tool_names == ("search", "code", *TOOLS)
        assert rl.source.allowed == set(TOOLS)
        tokenizer = rl.source.tokenizer
        prompt = tokenizer.decode(rl.source.prompt(examples[0]))
        assert "<convert_units>" in prompt and "<lookup_capital> country </lookup_capital>" in prompt
        rows = rl.train()
    assert len(rows) == 1 and rows[0]["step"] == 1.0
    assert rows[0]["tools/convert_units_per_traj"] == 1.0 and rows[0]["tools/lookup_capital_per_traj"] == 1.0
    assert rows[0]["tools/failure_rate"] == 0.0 and rows[0]["reward/format_error_rate"] == 0.0
    assert 0.0 < rows[0]["reward/acc"] < 1.0

    data = tmp_path / "eval.jsonl"
    save_examples(examples, data)
    for mode in ("all", "lookup_capital"):
        result = evaluate(
            config,
            config.model.name,
            str(data),
            mode,
            samples=1,
            greedy=True,
            limit=None,
            out_dir=tmp_path / "eval" / mode,
            engine=ScriptedEngine(tokenizer, _script()),
        )
        if mode == "all":
            for trajectory in result.trajectories:
                _check_calls(trajectory)
            calls = result.overall.tool_calls_mean
            assert calls == {"search": 0.0, "code": 0.0, "convert_units": 1.0, "lookup_capital": 1.0}
            page = render_trajectory(None, result.trajectories[0])
            assert "convert_units call" in page and "lookup_capital output" in page
        else:  # a one-tool mode: the other tool's call gets the corrective message, not the tool
            turns = [turn.action for turn in result.trajectories[0].turns]
            assert turns[:2] == ["invalid", "lookup_capital"]
    assert (tmp_path / "eval" / "all" / "trajectories.jsonl").is_file()


def test_no_file_under_src_names_the_tools():
    """Adding the two tools took no edit inside tapo: `git diff src/` is empty for them."""
    assert not [path for path in SRC.rglob("*.py") if any(name in path.read_text() for name in TOOLS)]
