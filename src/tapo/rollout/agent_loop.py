"""The agent loop of docs/method.md §1, token in and token out, one asyncio task per trajectory.

Each trajectory alternates model turns (the engine's sampled ids, appended unchanged, mask 1) and
environment insertions (mask 0) in the run's call format (:mod:`tapo.rollout.insertions`): with TAPO's tags, tool
outputs in ``<response>`` blocks or the corrective message, tokenized on their own; in the native format, the
tool or user message the model's chat template renders after its turn. Trajectories never wait for each other: a
slow tool call holds back only its own trajectory, while the others keep generating (continuous batching with vLLM;
with transformers, the engine batches whichever requests are waiting at that moment). With ``rollout.lockstep``
they do (:mod:`tapo.rollout.lockstep`): each turn's requests go to the engine together, so the batches, and what a
seeded run samples, do not depend on tool latency or load.

Every batch of a runner runs on one long-lived event loop (:class:`tapo.io.event_loop.EventLoopThread`), the one its
tools' async clients live on: the owner of a run passes its loop in and closes the tools on it; a runner given
none keeps a private loop for its life.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

from tapo.config.schema import RolloutConfig
from tapo.data.schema import Example
from tapo.engines.base import GenerationEngine, SamplingParams
from tapo.io.event_loop import EventLoopThread
from tapo.protocol import INVALID, TAPO, Action, Protocol
from tapo.records import Trajectory, Turn
from tapo.rollout.insertions import Insertions, insertions_for
from tapo.rollout.lockstep import TurnBarrier
from tapo.rollout.stop_rules import AFTER_INSERTION, AFTER_MODEL_TURN, Stop, TurnEnd, first_stop
from tapo.tools.registry import ToolRegistry

# (trajectory index, "model" or "environment", the text just appended)
StepCallback = Callable[[int, str, str], None]
# called with each trajectory as it finishes, in the order they finish (progress)
DoneCallback = Callable[[Trajectory], None]
# called with a trajectory and its model turns so far as each of its model turns returns from the engine (before
# any tool call it makes: the engine's work is done then), and again once a tool's output or the corrective message
# is inserted after it (the next turn's engine work is known then: those tokens are prefilled first); progress
TurnCallback = Callable[[Trajectory, int], None]


def turn_seed(seed: int | None, trajectory: int, turn: int) -> int | None:
    """A distinct, reproducible seed per trajectory and turn (the n samples of a prompt must differ)."""
    if seed is None:
        return None
    return (seed * 1_000_003 + trajectory * 1_009 + turn) % 2**31


class RolloutRunner:
    """Runs batches of prompts through the protocol with one engine and one tool registry.

    ``tools`` is the run's tool registry (its ``call`` never raises) or None for tool-less rollouts, in which case
    every tool tag gets the corrective message.
    ``on_step(trajectory_index, source, text)`` sees each piece as it joins a response (``source`` is
    ``"model"`` for a sampled turn, ``"environment"`` for an insertion), so ``tapo chat`` can show a trace live.
    ``loop`` is the run's event loop, the one the tools' clients belong to (None: a private one for this runner).
    ``protocol`` is the run's (its tools' tags, stop strings, parsing and corrective message); TAPO's by default.
    """

    def __init__(
        self,
        engine: GenerationEngine,
        tools: ToolRegistry | None,
        config: RolloutConfig,
        on_step: StepCallback | None = None,
        loop: EventLoopThread | None = None,
        protocol: Protocol = TAPO,
    ) -> None:
        self.engine = engine
        self.protocol = protocol
        self.tools = tools
        self.config = config
        self.tokenizer = engine.tokenizer
        self.on_step = on_step
        self.loop = loop if loop is not None else EventLoopThread("tapo-rollout")

    def sampling_params(self, seed: int | None = None, greedy: bool = False) -> SamplingParams:
        """Per-turn sampling parameters from the config (greedy for evaluation when asked)."""
        return SamplingParams(
            max_new_tokens=self.config.max_new_tokens_per_turn,
            temperature=0.0 if greedy else self.config.temperature,
            top_p=self.config.top_p,
            stop=self.protocol.stop_strings,
            seed=seed,
        )

    def run(
        self,
        prompts: list[list[int]],
        examples: list[Example | None],
        params: SamplingParams,
        allowed_tools: frozenset[str],
        on_done: DoneCallback | None = None,
        version: int = 0,
        on_turn: TurnCallback | None = None,
    ) -> list[Trajectory]:
        """One batch on the run's loop: every batch shares it, so the tools' clients stay usable across batches."""
        return self.loop.run(self.arun(prompts, examples, params, allowed_tools, on_done, version, on_turn))

    async def arun(
        self,
        prompts: list[list[int]],
        examples: list[Example | None],
        params: SamplingParams,
        allowed_tools: frozenset[str],
        on_done: DoneCallback | None = None,
        version: int = 0,
        on_turn: TurnCallback | None = None,
    ) -> list[Trajectory]:
        """Every trajectory as its own task, returned in the prompts' order; ``on_done`` sees each as it finishes,
        ``on_turn`` each as every one of its model turns returns and again after each insertion.
        ``version`` is the policy version of the engine's weights as the batch starts: each trajectory's
        ``policy_version``, and each token's unless the engine reports per-token versions (weights loaded mid-call)."""
        if len(prompts) != len(examples):
            raise ValueError(f"{len(prompts)} prompts but {len(examples)} examples")
        usable = frozenset(allowed_tools) if self.tools is not None else frozenset()
        stops = tuple(dict.fromkeys((*self.protocol.stop_strings, *params.stop)))
        barrier = TurnBarrier(len(prompts)) if self.config.lockstep else None

        async def one(index: int, prompt: list[int], example: Example | None) -> Trajectory:
            try:
                trajectory = await self._trajectory(
                    index, prompt, example, replace(params, stop=stops), usable, version, on_turn, barrier
                )
            finally:
                if barrier is not None:
                    barrier.finish()
            if on_done is not None:
                on_done(trajectory)
            return trajectory

        tasks = [one(i, prompt, example) for i, (prompt, example) in enumerate(zip(prompts, examples, strict=True))]
        return list(await asyncio.gather(*tasks))

    def _tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _truncate_output(self, text: str) -> str:
        ids = self._tokenize(text.strip())
        return (
            text.strip() if len(ids) <= self.config.max_obs_tokens else self._decode(ids[: self.config.max_obs_tokens])
        )

    def _insert(self, index: int, trajectory: Trajectory, inserted: list[int]) -> None:
        """Append environment ids (mask 0), cut where the response cap is."""
        room = self.config.max_response_tokens - len(trajectory.response_ids)
        ids = inserted[:room]
        if self.on_step is not None:
            self.on_step(index, "environment", self._decode(ids))
        trajectory.response_ids += ids
        trajectory.model_mask += [0] * len(ids)
        trajectory.logprobs += [None] * len(ids)
        last = trajectory.token_versions[-1] if trajectory.token_versions else trajectory.policy_version
        trajectory.token_versions += [last] * len(ids)

    async def _trajectory(
        self,
        index: int,
        prompt: list[int],
        example: Example | None,
        params: SamplingParams,
        allowed: frozenset[str],
        version: int,
        on_turn: TurnCallback | None,
        barrier: TurnBarrier | None,
    ) -> Trajectory:
        """Model turn, then the environment's, until a stop rule (:mod:`tapo.rollout.stop_rules`) ends it; with a
        ``barrier`` (``rollout.lockstep``) each model turn waits for the batch's other running trajectories."""
        trajectory = Trajectory(prompt_ids=list(prompt), example=example, policy_version=version)
        insertions = insertions_for(self.protocol, self.tokenizer, allowed)
        stop: Stop | None = None
        model_turns = 0
        while stop is None:
            if barrier is not None:
                await barrier.turn(index)
            text = await self._model_turn(index, trajectory, params)
            model_turns += 1
            if on_turn is not None:
                on_turn(trajectory, model_turns)
            action = self.protocol.parse_action(text)
            stop = first_stop(AFTER_MODEL_TURN, TurnEnd(trajectory, self.config, text, action))
            if stop is None:
                await self._environment_turn(index, trajectory, text, action, allowed, insertions)
                if on_turn is not None:
                    on_turn(trajectory, model_turns)
                stop = first_stop(AFTER_INSERTION, TurnEnd(trajectory, self.config))
        if stop.last_turn is not None:
            trajectory.turns.append(stop.last_turn)
        trajectory.finish_reason = stop.finish
        trajectory.response_text = self._decode(trajectory.response_ids)
        self.engine.release(trajectory.prompt_ids + trajectory.response_ids)
        return trajectory

    async def _model_turn(self, index: int, trajectory: Trajectory, params: SamplingParams) -> str:
        """Sample one turn within the room left under the response cap and append its ids unchanged (mask 1, the
        engine's log-probs); returns its text. The turn's seed is its own (:func:`turn_seed`)."""
        room = self.config.max_response_tokens - len(trajectory.response_ids)
        turn_params = replace(
            params,
            max_new_tokens=min(params.max_new_tokens, room),
            seed=turn_seed(params.seed, index, len(trajectory.turns)),
        )
        generation = await self.engine.agenerate(trajectory.prompt_ids + trajectory.response_ids, turn_params)
        sampled = generation.token_ids[:room]
        trajectory.response_ids += sampled
        trajectory.model_mask += [1] * len(sampled)
        trajectory.logprobs += (
            list(generation.logprobs[: len(sampled)]) if generation.logprobs else [None] * len(sampled)
        )
        trajectory.token_versions += (
            list(generation.versions[: len(sampled)])
            if generation.versions
            else [trajectory.policy_version] * len(sampled)
        )
        text = self._decode(sampled)
        if self.on_step is not None:
            self.on_step(index, "model", text)
        return text

    async def _environment_turn(
        self,
        index: int,
        trajectory: Trajectory,
        text: str,
        action: Action | None,
        allowed: frozenset[str],
        insertions: Insertions,
    ) -> None:
        """Answer a model turn that did not end the trajectory: an allowed tool call gets the tool's output, anything
        else the corrective message (native format: a call block that cannot be made gets why, as its tool
        message); either is recorded as a turn and inserted (mask 0)."""
        if self.tools is not None and action is not None and action.kind in allowed:
            turn = await self._call_tool(self.tools, action.kind, action.content)
        else:
            error = (action.error or f"tool {action.kind!r} is not available") if action else "no valid action"
            if self.protocol.native and action is not None:
                output = self.protocol.call_error(error, allowed)
            else:
                output = self.protocol.corrective_message(allowed)
            turn = Turn(INVALID, action.content if action else text, output, ok=False, error=error)
        trajectory.turns.append(turn)
        self._insert(index, trajectory, insertions(text, action, turn))

    async def _call_tool(self, tools: ToolRegistry, name: str, tool_input: str) -> Turn:
        start = time.perf_counter()
        result = await tools.call(name, tool_input)  # a registry never raises
        latency = time.perf_counter() - start
        output = self._truncate_output(result.text)
        return Turn(name, tool_input, output, ok=result.ok, latency_s=latency, error=result.error)
