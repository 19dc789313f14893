"""A seeded rollout samples the same tokens whatever the timing: which requests share a batch of the transformers
engine depends on when they arrive (tool latency, load), so every request draws from a random stream of its own;
with ``rollout.lockstep`` the batches themselves are the same whatever the timing (their bf16 rounding too)."""

from __future__ import annotations

import asyncio

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from tapo.config.schema import RolloutConfig
from tapo.engines.base import SamplingParams
from tapo.engines.forced import ForcedPrefixEngine
from tapo.engines.hf import HFEngine
from tapo.io.event_loop import EventLoopThread
from tapo.rollout.agent_loop import RolloutRunner
from tapo.tools.base import ToolResult
from tapo.tools.registry import ToolRegistry

pytestmark = pytest.mark.usefixtures("one_thread")

TRAJECTORIES = 8


@pytest.fixture(scope="module")
def engine_parts(tiny_checkpoint):
    return AutoModelForCausalLM.from_pretrained(tiny_checkpoint).eval(), AutoTokenizer.from_pretrained(tiny_checkpoint)


def test_a_row_samples_the_same_tokens_whatever_shares_its_batch(engine_parts):
    model, tokenizer = engine_parts
    engine = HFEngine(model, tokenizer, kv_reuse=False)
    params = SamplingParams(max_new_tokens=12, temperature=1.0)
    prompt = [1, 2, 3, 4]
    alone = engine.generate([prompt], params, seeds=[7])[0]
    crowded = engine.generate([[9, 8, 7, 6, 5, 4], prompt, [5, 5]], params, seeds=[3, 7, 11])[1]
    other_seed = engine.generate([prompt], params, seeds=[8])[0]
    assert alone.token_ids == crowded.token_ids
    assert alone.token_ids != other_seed.token_ids  # the seed does choose the tokens


class SlowSearch:
    """A search tool that answers after the delays it is given, in turn: only the timing differs between runs."""

    name = "search"

    def __init__(self, delays: list[float]) -> None:
        self.delays = delays
        self.calls = 0

    async def call(self, tool_input: str) -> ToolResult:
        delay = self.delays[self.calls % len(self.delays)]  # taken before sleeping: the calls run concurrently
        self.calls += 1
        await asyncio.sleep(delay)
        return ToolResult("Paris is the capital of France.")

    async def aclose(self) -> None:
        """Nothing to close."""


class RecordingEngine(HFEngine):
    """The transformers engine, noting the seeds of each batch its batcher hands it: a seed names one trajectory's
    turn, so the list says which requests shared which batch, in which order."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[list[int | None]] = []

    def generate(self, prompts, params, seeds=None):
        self.batches.append(list(seeds) if seeds is not None else [])
        return super().generate(prompts, params, seeds)


def _rollout(model, tokenizer, delays: list[float], lockstep: bool = False) -> tuple[list[list[int]], list]:
    """The response ids of a seeded rollout whose search tool answers after ``delays``, and the engine's batches."""
    # every trajectory's first turn calls the tool; the turns after it are sampled by the engine, in batches formed
    # by when each tool call came back (or all together, in lockstep)
    recording = RecordingEngine(model, tokenizer)
    engine = ForcedPrefixEngine(recording, ["<search> capital of France </search>"] * TRAJECTORIES)
    config = RolloutConfig(
        max_turns=2, max_new_tokens_per_turn=10, max_response_tokens=64, max_obs_tokens=16, lockstep=lockstep
    )
    with EventLoopThread("seeded") as loop:
        runner = RolloutRunner(engine, ToolRegistry({"search": SlowSearch(delays)}), config, loop=loop)
        prompts = [tokenizer(f"Question {i}: the capital of France?")["input_ids"] for i in range(TRAJECTORIES)]
        trajectories = runner.run(
            prompts, [None] * TRAJECTORIES, runner.sampling_params(seed=1234), frozenset({"search"})
        )
    return [t.response_ids for t in trajectories], recording.batches


DELAYS = {
    "at once": [0.0],
    "reversed": [0.1 * (TRAJECTORIES - i) for i in range(TRAJECTORIES)],
    "staggered": [0.3, 0.0, 0.2, 0.0, 0.5, 0.1, 0.0, 0.4],
}


def test_tool_latency_does_not_change_a_seeded_rollout(engine_parts):
    model, tokenizer = engine_parts
    prompt_order, reversed_order, staggered = (_rollout(model, tokenizer, d)[0] for d in DELAYS.values())
    assert prompt_order == reversed_order == staggered


def test_free_running_batches_follow_the_tools_latency(engine_parts):
    # what lockstep is for: without it, the same seeded rollout reaches the engine in batches the tool's timing sets
    model, tokenizer = engine_parts
    at_once, _, staggered = (_rollout(model, tokenizer, d)[1] for d in DELAYS.values())
    assert len(at_once[0]) == TRAJECTORIES
    assert at_once != staggered


def test_lockstep_batches_do_not_depend_on_the_tools_latency(engine_parts):
    model, tokenizer = engine_parts
    runs = [_rollout(model, tokenizer, d, lockstep=True) for d in DELAYS.values()]
    responses, batches = zip(*runs, strict=True)
    assert responses[0] == responses[1] == responses[2]
    assert batches[0] == batches[1] == batches[2]
    # each turn's batch holds every trajectory still running, in trajectory order (turn seeds grow with the index)
    assert len(batches[0][0]) == TRAJECTORIES
    assert all(batch == sorted(batch) for batch in batches[0])
    assert responses[0] == _rollout(model, tokenizer, DELAYS["at once"])[0]  # the tokens of one free-running batch
