"""The vLLM-server engine's wire format and weight push, against a loopback server that answers like vLLM.

The real ``vllm serve`` is exercised in ``tests/integration/test_rollout_vllm_server.py`` (needs vllm); this
checks, without it, what the engine sends, how it reads vLLM's replies and how it fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from safetensors.torch import load_file

from tapo.config.loader import ConfigError, load_config
from tapo.config.schema import VLLMServerEngineConfig
from tapo.engines.base import SamplingParams
from tapo.engines.openai_compat import OpenAIEngineError
from tapo.engines.vllm_server import VLLMServerEngine
from tapo.io.loopback import serve_in_thread as serve

STOPS = ("</search>", "</answer>")


def vllm_like_app(reply: dict[str, Any], dev_mode: bool = True) -> FastAPI:
    """Records requests; ``/v1/completions`` answers ``reply`` as the first choice."""
    app = FastAPI()
    app.state.requests = []

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "served-policy", "object": "model"}]}

    @app.post("/v1/completions")
    async def completions(request: Request):
        app.state.requests.append(("/v1/completions", await request.json()))
        return {"object": "text_completion", "choices": [{"index": 0, **reply}]}

    if dev_mode:

        @app.post("/collective_rpc")
        async def collective_rpc(request: Request):
            body = await request.json()
            app.state.requests.append(("/collective_rpc", body))
            path = Path(body["kwargs"]["weights_path"])
            if not path.is_dir():
                return JSONResponse({"error": f"{path} not found"}, status_code=500)
            return {"results": [None]}

        @app.post("/reset_prefix_cache")
        async def reset_prefix_cache():
            app.state.requests.append(("/reset_prefix_cache", None))
            return {}

    return app


STOPPED = {
    "token_ids": [28, 4213, 29],
    "logprobs": {"token_logprobs": [-0.5, -0.25, -0.125]},
    "finish_reason": "stop",
    "stop_reason": "</search>",
    "text": "ignored",
}


def test_sends_token_ids_and_reads_back_the_servers_ids_and_logprobs(tokenizer):
    app = vllm_like_app(STOPPED)
    with serve(app) as url:
        engine = VLLMServerEngine(url, tokenizer)
        [gen] = engine.generate([[1, 2, 3]], SamplingParams(max_new_tokens=7, temperature=0.0, stop=STOPS, seed=3))
    assert (gen.token_ids, gen.logprobs) == ([28, 4213, 29], [-0.5, -0.25, -0.125])
    assert (gen.finish_reason, gen.stop) == ("stop", "</search>")
    [(path, body)] = app.state.requests
    assert path == "/v1/completions" and body["model"] == "served-policy" and body["prompt"] == [1, 2, 3]
    assert body["return_token_ids"] is True and body["include_stop_str_in_output"] is True
    assert body["logprobs"] == 0 and body["skip_special_tokens"] is False
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (7, 0.0, 1.0, 3)


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason", "expected"),
    [("length", None, ("length", None)), ("stop", None, ("eos", None)), ("stop", 2, ("eos", None))],
)
def test_finish_reasons(tokenizer, finish_reason, stop_reason, expected):
    reply = {**STOPPED, "finish_reason": finish_reason, "stop_reason": stop_reason}
    with serve(vllm_like_app(reply)) as url:
        [gen] = VLLMServerEngine(url, tokenizer).generate([[1]], SamplingParams(stop=STOPS))
    assert (gen.finish_reason, gen.stop) == expected


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ({"text": "no ids", "finish_reason": "stop"}, "token_ids and logprobs expected"),
        ({**STOPPED, "logprobs": {"token_logprobs": [-1.0]}}, "3 token ids but 1 log-probs"),
    ],
)
def test_replies_that_are_not_vllms_fail_clearly(tokenizer, reply, message):
    with serve(vllm_like_app(reply)) as url, pytest.raises(OpenAIEngineError, match=message):
        VLLMServerEngine(url, tokenizer, max_retries=0).generate([[1]], SamplingParams())


def test_no_server_is_a_clear_error(tokenizer):
    with pytest.raises(OpenAIEngineError, match=r"no vLLM server answers .*vllm serve"):
        VLLMServerEngine("http://127.0.0.1:9", tokenizer)


def test_weights_are_written_atomically_and_reloaded_in_place(tokenizer, tmp_path):
    app = vllm_like_app(STOPPED)
    weight = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    state = {"model.embed_tokens.weight": weight, "lm_head.weight": weight, "model.norm.weight": torch.ones(3)}
    with serve(app) as url:
        VLLMServerEngine(url + "/v1", tokenizer, weights_dir=tmp_path / "policy").update_weights(state)
    assert sorted(p.name for p in (tmp_path / "policy").iterdir()) == ["model.safetensors"]
    saved = load_file(tmp_path / "policy" / "model.safetensors")
    assert set(saved) == {"model.embed_tokens.weight", "model.norm.weight"}  # the tied LM head travels once
    assert torch.equal(saved["model.embed_tokens.weight"], weight)
    assert app.state.requests == [
        ("/collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": str(tmp_path / "policy")}}),
        ("/reset_prefix_cache", None),
    ]


def test_weight_push_needs_a_directory_and_dev_mode(tokenizer, tmp_path):
    with serve(vllm_like_app(STOPPED, dev_mode=False)) as url:
        with pytest.raises(ValueError, match=r"rollout\.engine\.weights_dir"):
            VLLMServerEngine(url, tokenizer).update_weights({"w": torch.ones(1)})
        with pytest.raises(OpenAIEngineError, match="VLLM_SERVER_DEV_MODE=1"):
            VLLMServerEngine(url, tokenizer, weights_dir=tmp_path).update_weights({"w": torch.ones(1)})
    with serve(vllm_like_app(STOPPED)) as url, pytest.raises(OpenAIEngineError, match=r"HTTP 500.*not found"):
        VLLMServerEngine(url, tokenizer).reload(tmp_path / "missing")


def test_an_empty_state_dict_is_refused_before_anything_is_written(tokenizer, tmp_path):
    app = vllm_like_app(STOPPED)
    with serve(app) as url, pytest.raises(ValueError, match="empty state dict"):
        VLLMServerEngine(url + "/v1", tokenizer, weights_dir=tmp_path / "policy").update_weights({})
    assert app.state.requests == [] and not (tmp_path / "policy").exists()


def test_the_server_engine_needs_a_url():
    with pytest.raises(ConfigError, match=r"missing config key 'rollout\.engine\.url'"):
        load_config(None, ["rollout.engine=vllm-server"])
    config = load_config(None, ["rollout.engine=vllm-server", "rollout.engine.url=http://127.0.0.1:8000"])
    assert config.rollout.engine == VLLMServerEngineConfig(url="http://127.0.0.1:8000")


def test_the_rollout_source_closes_its_engine(tokenizer, tiny_checkpoint):
    """A run's end closes the engine it generated with (a vLLM engine's processes would outlive the run)."""
    from tapo.config import load_config
    from tapo.train.source import ToolRolloutSource

    config = load_config(None, ["tools.enabled=[]", "rollout.engine=vllm-server", "rollout.engine.url=http://x"])
    with serve(vllm_like_app(STOPPED)) as url:
        engine = VLLMServerEngine(url + "/v1", tokenizer)
        source = ToolRolloutSource(config, tiny_checkpoint, tokenizer, score=lambda trajectories: None, engine=engine)
        source.close()
    assert engine._io.closed
