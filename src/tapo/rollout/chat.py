"""A ``tapo chat`` session: the engine, the template's tools and the one event loop their clients live on.

Each question runs the same rollout as training and evaluation (:class:`RolloutRunner`) with the real tools, so a
chat shows exactly what the policy does under the protocol; each question is a fresh conversation (the protocol is
one question per trajectory). The command only parses, builds this session and prints.
"""

from __future__ import annotations

from collections.abc import Callable

from tapo.config.schema import TapoConfig
from tapo.engines.base import GenerationEngine
from tapo.engines.forced import ForcedPrefixEngine
from tapo.engines.hf import HFEngine
from tapo.io.closing import Closing
from tapo.io.event_loop import EventLoopThread
from tapo.prompts.templates import allowed_tools, render_prompt
from tapo.protocol import TAPO, Protocol
from tapo.records import Trajectory
from tapo.rollout.agent_loop import RolloutRunner
from tapo.rollout.trace import TraceRenderer
from tapo.tools.catalog import ToolCatalog
from tapo.tools.registry import ToolRegistry


def chat_tools(catalog: ToolCatalog, allowed: frozenset[str], warn: Callable[[str], None]) -> ToolRegistry:
    """The template's tools that the config enables. Search that cannot start here (no index) is left out with a
    warning, so chat works out of the box with the code tool alone; any other failure is raised (ValueError,
    OSError) for the caller to report."""
    wanted = set(catalog.enabled) & allowed
    try:
        return catalog.build(wanted)
    except (ValueError, OSError) as error:
        if "search" not in wanted:
            raise
        warn(f"search is off: {error}")
        return catalog.build(wanted - {"search"})


class ChatSession(Closing):
    """Questions answered one by one on one engine, one set of tools and one event loop; close it at the end."""

    def __init__(
        self, config: TapoConfig, engine: GenerationEngine, tools: ToolRegistry, protocol: Protocol = TAPO
    ) -> None:
        self.config = config
        self.engine = engine
        self.tools = tools
        self.protocol = protocol  # the run's tools' tags (a user's tool among them)
        self.loop = EventLoopThread("tapo-chat")

    def ask(self, question: str, template: str, renderer: TraceRenderer, greedy: bool, force: list[str]) -> Trajectory:
        """One trajectory for ``question``, shown by ``renderer`` as it grows; ``force`` are forced first turns."""
        engine = self.engine
        if isinstance(engine, HFEngine):  # the transformers engine streams tokens; others show each turn when done
            engine.on_tokens = renderer.stream
        if force:
            engine = ForcedPrefixEngine(engine, force)
        runner = RolloutRunner(
            engine, self.tools, self.config.rollout, on_step=renderer, loop=self.loop, protocol=self.protocol
        )
        prompt = render_prompt(engine.tokenizer, question, template, self.protocol)
        params = runner.sampling_params(seed=None if greedy else self.config.run.seed, greedy=greedy)
        allowed = allowed_tools(template, self.protocol) & frozenset(
            self.tools.names
        )  # the corrective message names only these
        trajectory = runner.run([prompt], [None], params, allowed)[0]
        renderer.summary(trajectory)
        return trajectory

    def close(self) -> None:
        """Close the tools on their loop, the loop, then the engine (a vLLM engine's processes end with it)."""
        self.loop.run(self.tools.aclose())
        self.loop.close()
        self.engine.close()
