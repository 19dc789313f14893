"""The transformers backend: batched ``generate`` with left padding, KV cache and per-sequence stop strings.

The default on CPU. It returns exactly the ids that were sampled (cut after the token that completed a
stop string or the EOS token, padding removed) and the log-probability of each under the distribution it
was sampled from (after temperature and top-p), recorded during generation one step at a time so that no
``batch x steps x vocab`` score tensor is ever held.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteriaList,
    StopStringCriteria,
)
from transformers.generation.streamers import BaseStreamer

from tapo.engines.base import Generation, SamplingParams
from tapo.engines.batching import AsyncBatcher
from tapo.engines.stops import eos_token_ids, find_cut
from tapo.engines.weights import require_weights


class _SampledLogprobs(LogitsProcessor):
    """Records log p(sampled token) per row from the final (warped) scores, keeping only the last step.

    Placed last in the processor list, it sees the scores the sampler draws from; the token drawn at step
    t appears as the last input id at step t+1, and the final step is resolved by ``finish``.
    """

    def __init__(self) -> None:
        self._last: torch.Tensor | None = None
        self.steps: list[torch.Tensor] = []

    def _gather(self, tokens: torch.Tensor) -> None:
        if self._last is not None:
            self.steps.append(self._last.gather(1, tokens[:, None].to(self._last.device))[:, 0].float().cpu())

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._last is not None:
            self._gather(input_ids[:, -1])
        self._last = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, last_tokens: torch.Tensor) -> torch.Tensor:
        """``steps x batch`` log-probs once generation is over (``last_tokens``: the final sampled column)."""
        self._gather(last_tokens)
        self._last = None
        return torch.stack(self.steps) if self.steps else torch.empty(0, len(last_tokens))


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts left-padded to one width (the new tokens of every row then start in the same column), with
    their attention mask."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


class _TokenStreamer(BaseStreamer):
    """Hands the tokens of a one-sequence ``generate`` call to a listener as they are sampled."""

    def __init__(self, listener: Callable[[list[int]], None]) -> None:
        self.listener = listener
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if self._prompt_seen:
            self.listener(value.reshape(-1).tolist())
        self._prompt_seen = True  # generate's first put is the prompt itself

    def end(self) -> None:
        """Nothing to flush: the listener decodes what it has been given."""


class HFEngine:
    """``GenerationEngine`` over a transformers causal LM.

    ``update_weights`` copies a state dict into the model in place. When the engine holds the trainer's own
    model object (the usual single-process CPU setup) the weights are already current and nothing is copied.

    ``on_tokens``, when set, receives each token of a one-sequence batch as it is sampled (``tapo chat`` shows
    the turn growing); the returned generation is unchanged, and the callback may get a few tokens past a
    stop string's end that the result then cuts.
    """

    on_tokens: Callable[[list[int]], None] | None = None

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 64) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.eos_ids = eos_token_ids(model.generation_config.eos_token_id, tokenizer)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else min(self.eos_ids))
        self._batcher = AsyncBatcher(self.generate, batch_size)

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        if any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token")
        # Similar lengths together: less padding per batch; results are put back in the callers' order.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Generation | None] = [None] * len(prompts)
        seed_ctx = torch.random.fork_rng() if params.seed is not None else contextlib.nullcontext()
        with seed_ctx:
            if params.seed is not None:
                torch.manual_seed(params.seed)
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                for i, generation in zip(chunk, self._generate_batch([prompts[i] for i in chunk], params), strict=True):
                    results[i] = generation
        return [r for r in results if r is not None]

    async def agenerate(self, prompt: list[int], params: SamplingParams) -> Generation:
        return await self._batcher.submit(prompt, params)

    @torch.no_grad()
    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        input_ids, attention = (t.to(self.model.device) for t in left_pad(prompts, self.pad_id))
        width = input_ids.shape[1]
        recorder = _SampledLogprobs()
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=not params.greedy,
            temperature=params.temperature if not params.greedy else None,
            top_p=params.top_p if not params.greedy else None,
            top_k=None,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id,
            use_cache=True,
            return_dict_in_generate=False,
        )
        sequences = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            generation_config=config,
            logits_processor=LogitsProcessorList([recorder]),
            stopping_criteria=StoppingCriteriaList(
                [_stop_criteria(self.tokenizer, params.stop)] if params.stop else []
            ),
            streamer=_TokenStreamer(self.on_tokens) if self.on_tokens is not None and len(prompts) == 1 else None,
        )
        new = sequences[:, width:].cpu()
        logprobs = recorder.finish(new[:, -1]).T if new.shape[1] else torch.empty(len(prompts), 0)
        out = []
        for prompt, row, row_logprobs in zip(prompts, new.tolist(), logprobs.tolist(), strict=True):
            cut = find_cut(self.tokenizer, row, params.stop, self.eos_ids, params.max_new_tokens, prompt)
            out.append(
                Generation(
                    token_ids=row[: cut.length],
                    finish_reason=cut.finish_reason,
                    logprobs=row_logprobs[: cut.length],
                    stop=cut.stop,
                )
            )
        return out

    def update_weights(self, state_dict: dict[str, Any]) -> None:
        """Copy ``state_dict`` in (or check that it is already the engine's own storage); an empty or partial
        state dict is an error, never a skip: the engine would go on sampling from old weights."""
        require_weights(state_dict)
        own = self.model.state_dict()
        if all(k in own and own[k].data_ptr() == v.data_ptr() for k, v in state_dict.items()):
            return  # the engine shares the trainer's model: nothing to copy
        missing = set(own) - set(state_dict)
        unexpected = set(state_dict) - set(own)
        if unexpected or missing - _tied_names(self.model):
            raise ValueError(
                f"state dict does not match the engine's model: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
        with torch.no_grad():
            for name, value in state_dict.items():
                own[name].copy_(value.to(own[name].device, own[name].dtype))


@functools.lru_cache(maxsize=16)
def _stop_criteria(tokenizer: Any, stops: tuple[str, ...]) -> StopStringCriteria:
    """Built once per tokenizer and stop set: building one scans the whole vocabulary (seconds)."""
    return StopStringCriteria(tokenizer, list(stops))


def _tied_names(model: Any) -> set[str]:
    """Parameters that alias another (tied embeddings): a state dict may omit them."""
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return set(tied) if isinstance(tied, dict | list | set | tuple) else set()
