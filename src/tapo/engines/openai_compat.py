"""A generation engine for any OpenAI-compatible server (vLLM, llama.cpp, TGI, hosted APIs).

It lets hosted or separately served models be evaluated under the TAPO protocol: the rollout stays the
same (stop strings on closing tags, tool outputs inserted between turns); only generation goes over HTTP.

NOT token-exact. The prompt ids are decoded to text with the local tokenizer, the server tokenizes them
again, and the returned text is encoded with the local tokenizer; ``logprobs`` are None. That is fine for
evaluation (rewards read text), never for training.

Two APIs:
- ``completions``: the decoded prompt (chat template already applied) is sent as raw text, with the stop
  strings. This is the faithful mode: the model continues exactly the text the rollout built.
- ``chat``: the decoded text is split back into messages using the local chat template (one user turn,
  optionally a system turn), and text the model already wrote this episode (earlier turns plus tool
  outputs) becomes a final assistant message sent with ``continue_final_message`` (a vLLM extension).
  Servers that ignore the flag treat it as a finished turn and answer in a new one: usable, less faithful.

OpenAI servers drop the stop string from the returned text and most do not say which one matched; the
rollout contract wants it in the ids. vLLM reports it as ``stop_reason``; otherwise the stop whose opening
tag (``</search>`` → ``<search>``) was written last is taken, which is what the TAPO tags imply.

The engine keeps one pooled httpx client and one concurrency limit on an event loop of its own (as the vLLM
engine does): the rollout awaits it from the run's loop, the batch ``generate`` (tests) calls it from sync code,
and the connections live as long as the engine, whichever loop asks. ``close()`` releases them. Each attempt of a
request has ``timeout_s`` in all (httpx's time-out is per read, which a server trickling its reply resets with
every byte), and closing waits a bounded time (:mod:`tapo.io.deadline`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from tapo.engines.base import FinishReason, Generation, SamplingParams
from tapo.io.deadline import close_all
from tapo.io.event_loop import EventLoopThread

OpenAIApi = Literal["completions", "chat"]
_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_SENTINEL_SYSTEM = "\x00TAPO-SYSTEM\x00"
_SENTINEL_USER = "\x00TAPO-USER\x00"


class OpenAIEngineError(RuntimeError):
    """The server could not be reached or answered with an error after all retries."""


def parse_openai_model(spec: str) -> tuple[str, str]:
    """Split ``openai:URL#MODEL`` into the base URL and the model name."""
    if not spec.startswith("openai:"):
        raise ValueError(f"not an OpenAI model spec: {spec!r} (expected openai:URL#MODEL)")
    url, sep, model = spec.removeprefix("openai:").partition("#")
    if not sep or not url or not model:
        raise ValueError(
            f"bad OpenAI model spec {spec!r}: expected openai:URL#MODEL, e.g. openai:http://host:8000/v1#qwen"
        )
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"bad OpenAI model spec {spec!r}: the URL must start with http:// or https://")
    return url.rstrip("/"), model


def infer_stop(text: str, stops: tuple[str, ...]) -> str | None:
    """The stop string that most plausibly ended ``text``: the one whose opening tag appears last."""
    best, best_pos = None, -1
    for stop in stops:
        opening = stop.replace("</", "<", 1) if stop.startswith("</") else None
        pos = text.rfind(opening) if opening else -1
        if pos > best_pos:
            best, best_pos = stop, pos
    return best if best is not None else (stops[0] if len(stops) == 1 else None)


@dataclass(frozen=True)
class ChatSplit:
    """A decoded prompt taken apart into chat messages: system (optional), user, assistant prefix."""

    system: str | None
    user: str
    assistant_prefix: str

    def messages(self) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system}] if self.system is not None else []
        msgs.append({"role": "user", "content": self.user})
        if self.assistant_prefix:
            msgs.append({"role": "assistant", "content": self.assistant_prefix})
        return msgs


def split_chat(tokenizer: Any, text: str) -> ChatSplit:
    """Invert the chat template for one user turn (with the template's default system, or an explicit one)."""
    layouts: list[tuple[bool, list[dict[str, str]]]] = [
        (False, [{"role": "user", "content": _SENTINEL_USER}]),
        (True, [{"role": "system", "content": _SENTINEL_SYSTEM}, {"role": "user", "content": _SENTINEL_USER}]),
    ]
    for has_system, msgs in layouts:
        rendered = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        if has_system:
            head, _, rendered = rendered.partition(_SENTINEL_SYSTEM)
            between, _, tail = rendered.partition(_SENTINEL_USER)
        else:
            head, _, tail = rendered.partition(_SENTINEL_USER)
            between = ""
        if not text.startswith(head):
            continue
        rest = text[len(head) :]
        system = None
        if has_system:
            system, sep, rest = rest.partition(between)
            if not sep:
                continue
        user, sep, prefix = rest.partition(tail)
        if sep:
            return ChatSplit(system=system, user=user, assistant_prefix=prefix)
    raise ValueError("the prompt does not follow the tokenizer's chat template for one user turn; use api=completions")


class OpenAICompatEngine:
    """``GenerationEngine`` over an OpenAI-compatible HTTP API (see the module docstring for its limits)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        tokenizer: Any,
        api: OpenAIApi = "completions",
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        max_concurrency: int = 8,
        retry_backoff_s: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.tokenizer = tokenizer
        self.api = api
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_concurrency = max_concurrency
        self.retry_backoff_s = retry_backoff_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._io = EventLoopThread("tapo-openai-engine")
        self._client = httpx.AsyncClient(timeout=timeout_s)  # both used on self._io only
        self._slots = asyncio.Semaphore(max_concurrency)

    @classmethod
    def from_spec(cls, spec: str, tokenizer: Any, api_key_env: str = "OPENAI_API_KEY", **kwargs: Any):
        url, model = parse_openai_model(spec)
        return cls(url, model, tokenizer, api_key=os.environ.get(api_key_env), **kwargs)

    # -- request building -------------------------------------------------------------------------

    def _payload(self, prompt: list[int], params: SamplingParams) -> tuple[str, dict[str, Any]]:
        text = self.tokenizer.decode(prompt, skip_special_tokens=False)
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if self.api == "completions":
            body["prompt"] = text
            return "/completions", body
        split = split_chat(self.tokenizer, text)
        body["messages"] = split.messages()
        if split.assistant_prefix:
            body.update(continue_final_message=True, add_generation_prompt=False)
        return "/chat/completions", body

    def _to_generation(self, data: dict[str, Any], params: SamplingParams) -> Generation:
        try:
            choice = data["choices"][0]
            text = choice["text"] if self.api == "completions" else (choice["message"].get("content") or "")
        except (KeyError, IndexError, TypeError, AttributeError) as error:
            raise OpenAIEngineError(f"unexpected response from {self.base_url}: {str(data)[:300]}") from error
        reason = choice.get("finish_reason")
        stop: str | None = None
        finish: FinishReason
        if reason == "length":
            finish = "length"
        else:
            if "stop_reason" in choice:  # vLLM: the matched stop string, or None/an id for EOS
                stop = choice["stop_reason"] if choice["stop_reason"] in params.stop else None
            elif params.stop:
                stop = infer_stop(text, params.stop)
            # A server that stopped on a stop string drops it from the text; put it back so the ids match.
            if stop is not None and not text.endswith(stop):
                text += stop
            finish = "stop" if stop is not None else "eos"
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if finish == "eos" and self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)  # as local engines do: the turn visibly ends
        return Generation(token_ids=ids, finish_reason=finish, logprobs=None, stop=stop)

    # -- transport ----------------------------------------------------------------------------------

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        error: str = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(min(self.retry_backoff_s * 2 ** (attempt - 1), 8.0))
            try:
                async with asyncio.timeout(self.timeout_s):
                    response = await self._client.post(self.base_url + path, json=body, headers=self._headers)
            except TimeoutError:
                error = f"no whole reply within {self.timeout_s:g} s"
                continue
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in _RETRY_STATUS:
                error = f"HTTP {response.status_code}: {response.text[:300]}"
                continue
            if response.is_error:
                raise OpenAIEngineError(
                    f"{self.base_url}{path} answered HTTP {response.status_code}: {response.text[:300]}"
                )
            return response.json()
        raise OpenAIEngineError(f"{self.base_url}{path} failed after {self.max_retries + 1} attempts: {error}")

    async def _agenerate(self, prompt: list[int], params: SamplingParams) -> Generation:
        """One request, on the engine's own loop."""
        path, body = self._payload(prompt, params)
        async with self._slots:
            data = await self._post(path, body)
        return self._to_generation(data, params)

    async def agenerate(self, prompt: list[int], params: SamplingParams) -> Generation:
        return await self._io.arun(self._agenerate(prompt, params))

    async def _agenerate_many(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        return list(await asyncio.gather(*(self._agenerate(p, params) for p in prompts)))

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        """Every prompt as its own concurrent request, for sync callers (tests, integration checks)."""
        return self._io.run(self._agenerate_many(prompts, params))

    def release(self, ids: Sequence[int]) -> None:
        """Nothing to free here: the server manages its own cache."""

    def update_weights(self, state_dict: dict[str, Any]) -> None:
        raise NotImplementedError("a remote OpenAI-compatible server cannot take weight updates; use it to evaluate")

    def close(self) -> None:
        """Close the connections and stop the engine's loop; closing twice is a no-op."""
        if not self._io.closed:
            self._io.run(close_all({"the HTTP client": self._client.aclose}))
            self._io.close()
