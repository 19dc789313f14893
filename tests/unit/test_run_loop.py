"""One event loop per run: the tools' async clients stay usable from the first batch to the last.

A real code server on loopback behind ``tools.code.kind=remote``, driven through the real rollout, the
training source and the evaluator, batch after batch: every code call must reach the server. (With a fresh
event loop per batch, the remote tool's connection pool died with the first loop and every second batch failed.)
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tapo.config import TapoConfig, load_config
from tapo.config.schema import SandboxCodeConfig, TransformersEngineConfig
from tapo.data.io import save_examples
from tapo.data.schema import Example
from tapo.engines.scripted import ScriptedEngine
from tapo.eval.runner import evaluate
from tapo.io.event_loop import EventLoopThread
from tapo.io.loopback import serve_in_thread
from tapo.records import Trajectory
from tapo.rollout.agent_loop import RolloutRunner
from tapo.tools.catalog import build_tools
from tapo.tools.code.server import create_app
from tapo.train.source import ToolRolloutSource

pytestmark = pytest.mark.timeout(120)

SCRIPT = ["<code>\nprint(6 * 7)\n</code>", "<answer> 42 </answer>"]
BATCHES = 4


@pytest.fixture(scope="module")
def code_url():
    with serve_in_thread(create_app(SandboxCodeConfig(timeout_s=5))) as url:
        yield url


def remote_config(url: str) -> TapoConfig:
    """A code-only config whose code tool is the server at ``url``."""
    return load_config(
        None,
        [
            "tools.enabled=[code]",
            "tools.code.kind=remote",
            f"tools.code.url={url}",
            "data.template=code_only",
            "trainer.group_size=2",
            "reward.overlong.enabled=false",
        ],
    )


def questions(n: int) -> list[Example]:
    return [
        Example(id=str(i), question=f"What is 6 times 7 ({i})?", data_source="calculator", golds=["42"])
        for i in range(n)
    ]


def code_turns(trajectories: list[Trajectory]) -> list[tuple[bool, str]]:
    return [(turn.ok, turn.output) for t in trajectories for turn in t.turns if turn.action == "code"]


def test_every_batch_of_a_runner_reaches_the_remote_code_server(tokenizer, code_url):
    config = remote_config(code_url)
    tools = build_tools(config.tools)
    runner = RolloutRunner(ScriptedEngine(tokenizer, SCRIPT), tools, config.rollout)
    prompts = [tokenizer(f"question {i}")["input_ids"] for i in range(3)]
    calls: list[tuple[bool, str]] = []
    for _ in range(BATCHES):
        trajectories = runner.run(prompts, [None] * 3, runner.sampling_params(), frozenset({"code"}))
        calls += code_turns(trajectories)
    assert calls == [(True, "42")] * (3 * BATCHES)
    runner.loop.run(tools.aclose())
    runner.loop.close()


def test_the_training_source_keeps_its_clients_across_rounds_and_closes_them(tokenizer, code_url):
    config = remote_config(code_url)
    scored: list[Trajectory] = []
    source = ToolRolloutSource(config, None, tokenizer, score=scored.extend, engine=ScriptedEngine(tokenizer, SCRIPT))
    examples = questions(2)
    finished: list[int] = []
    for step in range(BATCHES):
        groups = source.sample(examples, step=step, round=0, on_done=lambda: finished.append(len(scored)))
        assert [len(group) for group in groups] == [2, 2]
    assert len(finished) == 2 * 2 * BATCHES  # one call per trajectory, each before its round is scored
    source.close()
    assert code_turns(scored) == [(True, "42")] * (2 * 2 * BATCHES)
    assert source.loop.closed and not any(t.name == "tapo-rollout" for t in threading.enumerate())


def test_an_evaluation_reaches_the_remote_code_server_and_reports_each_trajectory(tokenizer, code_url, tmp_path: Path):
    config = remote_config(code_url)
    config.rollout = config.rollout.model_copy(update={"engine": TransformersEngineConfig(batch_size=2)})
    data = save_examples(questions(7), tmp_path / "set.jsonl")
    engine = ScriptedEngine(tokenizer, SCRIPT)
    seen: list[int] = []
    out = tmp_path / "out"
    result = evaluate(
        config, "scripted", str(data), "code", 1, True, None, out, engine, lambda done, _total, _work: seen.append(done)
    )
    # 0 of 7 at the start, then as trajectories finish (and turn), to all 7
    assert seen[0] == 0 and seen[-1] == 7 and seen == sorted(seen)
    assert code_turns(result.trajectories) == [(True, "42")] * 7
    assert all(t.scored.acc for t in result.trajectories)


def test_the_loop_thread_runs_cancels_and_closes():
    loop = EventLoopThread("test-loop")

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def fail() -> None:
        raise ValueError("boom")

    async def nested() -> int:  # on its own loop arun just awaits; run would wait for itself forever
        with pytest.raises(RuntimeError, match="inside its own event loop"):
            loop.run(answer())
        return await loop.arun(answer())

    assert loop.run(answer()) == 42 and loop.run(nested()) == 42
    assert asyncio.run(loop.arun(answer())) == 42  # awaited from another loop
    with pytest.raises(ValueError, match="boom"):
        loop.run(fail())
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    pending = asyncio.run_coroutine_threadsafe(forever(), loop._loop)
    started.wait(5)
    loop.close()
    assert pending.cancelled() and loop.closed and loop._loop.is_closed()
    with pytest.raises(RuntimeError, match="closed"):
        loop.run(answer())
    loop.close()  # twice is fine
