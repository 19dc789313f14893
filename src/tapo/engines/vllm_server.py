"""Generation on a separate vLLM server (``vllm serve``): token-exact, with in-place weight reloads.

Generation goes through vLLM's OpenAI-compatible ``/v1/completions`` with the prompt as token ids and vLLM's
``return_token_ids``, ``include_stop_str_in_output`` and ``logprobs`` extensions: the ids the server sampled
and their log-probs come back as they are, nothing is decoded and re-tokenized, so the trainer can score
exactly those tokens (the plain :class:`OpenAICompatEngine` cannot promise that, which is why it only
evaluates). Each trajectory is its own request, so the server's continuous batching keeps generating for
every trajectory that is not waiting on a tool.

Weights move with vLLM's own in-place reload: the trainer writes the policy as safetensors into
``weights_dir`` (a directory the server can read: local disk on one machine, a shared file system across
nodes), then every vLLM worker runs ``reload_weights(weights_path=...)`` through the server's
``/collective_rpc`` route and the prefix cache is dropped. The engine keeps running: no restart, no reload
of the KV-cache memory or the compiled graphs. Those routes are vLLM's development routes, served when the
server starts with ``VLLM_SERVER_DEV_MODE=1``.

Every request, the model query and the reload routes included, goes through the engine's own loop under a
deadline on the whole request (httpx's time-out is per read, which a server trickling its reply resets).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx

from tapo.engines.base import FinishReason, Generation, SamplingParams
from tapo.engines.openai_compat import OpenAICompatEngine, OpenAIEngineError
from tapo.engines.state_dict import unique_cpu_tensors

WEIGHTS_FILE = "model.safetensors"


class VLLMServerEngine(OpenAICompatEngine):
    """``GenerationEngine`` over a ``vllm serve`` process: exact ids and log-probs, weights pushed by reload."""

    def __init__(
        self,
        server_url: str,
        tokenizer: Any,
        weights_dir: str | Path | None = None,
        timeout_s: float = 600.0,
        max_retries: int = 3,
        max_concurrency: int = 256,
    ) -> None:
        self.root = server_url.rstrip("/").removesuffix("/v1")
        self.weights_dir = Path(weights_dir) if weights_dir else None
        super().__init__(
            self.root + "/v1",
            "",  # asked of the server next, on the engine's loop
            tokenizer,
            api="completions",
            timeout_s=timeout_s,
            max_retries=max_retries,
            max_concurrency=max_concurrency,
        )
        try:
            self.model = self._served_model()
        except BaseException:
            self.close()
            raise

    def _request(self, method: str, path: str, body: dict[str, Any] | None, timeout_s: float) -> httpx.Response:
        """One request to the server within ``timeout_s`` in all; a late reply is an ``httpx.TimeoutException``."""

        async def send() -> httpx.Response:
            async with asyncio.timeout(timeout_s):
                return await self._client.request(method, self.root + path, json=body)

        try:
            return self._io.run(send())
        except TimeoutError:
            raise httpx.TimeoutException(f"no whole reply within {timeout_s:g} s") from None

    def _served_model(self) -> str:
        try:
            response = self._request("GET", "/v1/models", None, 30.0)
            response.raise_for_status()
            return response.json()["data"][0]["id"]
        except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as error:
            raise OpenAIEngineError(
                f"no vLLM server answers at {self.root}/v1/models ({error}); start one with "
                "`VLLM_SERVER_DEV_MODE=1 vllm serve MODEL --logprobs-mode processed_logprobs`"
            ) from error

    # -- generation -------------------------------------------------------------------------------------

    def _payload(self, prompt: list[int], params: SamplingParams) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": 1.0 if params.greedy else params.top_p,
            "logprobs": 0,
            "return_token_ids": True,
            "include_stop_str_in_output": True,
            "skip_special_tokens": False,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        return "/completions", body

    def _to_generation(self, data: dict[str, Any], params: SamplingParams) -> Generation:
        try:
            choice = data["choices"][0]
            ids = [int(token) for token in choice["token_ids"]]
            logprobs = [float(value) for value in choice["logprobs"]["token_logprobs"]]
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise OpenAIEngineError(
                f"{self.root} did not answer like a vLLM server (token_ids and logprobs expected): {str(data)[:300]}"
            ) from error
        if len(logprobs) != len(ids):
            raise OpenAIEngineError(f"{self.root} returned {len(ids)} token ids but {len(logprobs)} log-probs")
        stop = choice.get("stop_reason") if choice.get("stop_reason") in params.stop else None
        finish: FinishReason = "length" if choice.get("finish_reason") == "length" else "stop" if stop else "eos"
        return Generation(token_ids=ids, finish_reason=finish, logprobs=logprobs, stop=stop)

    # -- weights ----------------------------------------------------------------------------------------

    def update_weights(self, state_dict: dict[str, Any]) -> None:
        """Write the policy into ``weights_dir`` (atomically) and have the server reload it in place."""
        from safetensors.torch import save_file

        if self.weights_dir is None:
            raise ValueError(
                "training against a vLLM server needs rollout.engine.weights_dir: a directory the trainer "
                "writes the policy to and the server reads it from"
            )
        tensors = unique_cpu_tensors(state_dict)  # first: an empty state dict writes nothing
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        partial = self.weights_dir / f".{WEIGHTS_FILE}.partial"
        save_file(tensors, str(partial))
        os.replace(partial, self.weights_dir / WEIGHTS_FILE)
        self.reload(self.weights_dir)

    def reload(self, weights_path: str | Path) -> None:
        """Every server worker reloads its weights from ``weights_path`` (a checkpoint directory it can read)."""
        self._control("/collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": str(weights_path)}})
        self._control("/reset_prefix_cache", None)  # cached KV blocks were computed with the old weights

    def _control(self, path: str, body: dict[str, Any] | None) -> None:
        try:
            response = self._request("POST", path, body, self.timeout_s)
        except httpx.HTTPError as error:
            raise OpenAIEngineError(f"{self.root}{path} could not be reached: {error}") from error
        if response.status_code == 404:
            raise OpenAIEngineError(
                f"{self.root} has no {path} route: start the server with VLLM_SERVER_DEV_MODE=1 so weights can be "
                "reloaded in place"
            )
        if response.is_error:
            raise OpenAIEngineError(f"{self.root}{path} answered HTTP {response.status_code}: {response.text[:300]}")
