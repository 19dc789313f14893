"""The real SmolLM2 checkpoint completes a multi-turn rollout with both real tools (transformers backend)."""

from __future__ import annotations

import pytest
import torch

from tapo.config.schema import RolloutConfig, SandboxCodeConfig
from tapo.engines.forced import ForcedPrefixEngine
from tapo.engines.hf import HFEngine
from tapo.prompts.templates import render_prompt
from tapo.rollout.agent_loop import RolloutRunner
from tapo.tools.code.factory import build_code_tool
from tapo.tools.registry import ToolRegistry
from tapo.tools.search.backend import LocalBackend
from tapo.tools.search.bm25 import BM25Index
from tapo.tools.search.tool import SearchTool

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FORCED = ["<search> Eiffel Tower completed </search>", "<code>print(2000 - 1889)</code>"]


def test_smollm2_multi_turn_rollout_with_search_and_code(smollm2_path, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    rows = [
        {"id": "1", "title": "Eiffel Tower", "text": "The Eiffel Tower in Paris was completed in 1889."},
        {"id": "2", "title": "Louvre", "text": "The Louvre is the world's most-visited museum."},
    ]
    index = BM25Index.build(rows, tmp_path / "index")
    tools = ToolRegistry(
        {"search": SearchTool(LocalBackend(index), topk=1), "code": build_code_tool(SandboxCodeConfig())}
    )
    model = AutoModelForCausalLM.from_pretrained(smollm2_path).eval()
    config = RolloutConfig(max_turns=2, max_response_tokens=160, max_new_tokens_per_turn=40)
    runner = RolloutRunner(ForcedPrefixEngine(HFEngine(model, tokenizer), FORCED), tools, config)
    prompt = render_prompt(tokenizer, "How many years before 2000 was the Eiffel Tower completed?", "compact")
    traj = runner.run([prompt], [None], runner.sampling_params(greedy=True), frozenset({"search", "code"}))[0]
    assert traj.tool_calls == {"search": 1, "code": 1}
    assert "1889" in traj.turns[0].output and traj.turns[1].output == "111" and traj.turns[1].ok
    assert len(traj.response_ids) == len(traj.model_mask) == len(traj.logprobs) <= 160
    assert traj.finish_reason in ("answer", "length", "max_turns")
    model_turn = [i for i, m in enumerate(traj.model_mask) if m][-1]
    assert traj.logprobs[model_turn] is not None and traj.logprobs[model_turn] < 0  # sampled by the real model


def test_smollm2_kv_reuse_gives_the_rollout_of_a_full_prefill(smollm2_path, tokenizer, one_thread):
    """Greedy multi-turn rollouts (corrective messages between turns) with and without the cache: same ids and loss
    mask, and the cached engine's log-probs equal a full forward over the finished sequences."""
    from transformers import AutoModelForCausalLM

    from tapo.train.logprobs import pad_batch, response_logprobs

    model = AutoModelForCausalLM.from_pretrained(smollm2_path).eval()
    config = RolloutConfig(max_turns=2, max_response_tokens=48, max_new_tokens_per_turn=12)
    prompts = [render_prompt(tokenizer, q, "compact") for q in ("Who built the Eiffel Tower?", "What is 17 * 23?")]
    runs = {}
    for reuse in (True, False):
        engine = HFEngine(model, tokenizer, kv_reuse=reuse)
        runner = RolloutRunner(engine, None, config)
        runs[reuse] = runner.run(prompts, [None, None], runner.sampling_params(greedy=True), frozenset())
        assert (engine.stats.reused > 0) == reuse
    cached, full = runs[True], runs[False]
    assert [t.response_ids for t in cached] == [t.response_ids for t in full]
    assert [t.model_mask for t in cached] == [t.model_mask for t in full]
    with torch.no_grad():
        reference, _ = response_logprobs(model, pad_batch(prompts, [t.response_ids for t in cached], pad_id=0))
    gaps = torch.tensor(
        [
            abs(reference[i, j].item() - lp)
            for i, t in enumerate(cached)
            for j, lp in enumerate(t.logprobs)
            if lp is not None
        ]
    )
    assert len(gaps) > 0 and gaps.mean() < 1e-4 and gaps.max() < 1e-4
