"""The transformers backend: a batched decode loop over the model's forward, with KV reuse across turns.

The default on CPU. It returns exactly the ids that were sampled (cut after the token that completed a stop
string or the EOS token) and the log-probability of each under the distribution it was sampled from (after
temperature and top-p), recorded one step at a time so that no ``batch x steps x vocab`` tensor is ever held.

Why not ``model.generate``: a multi-turn trajectory asks again with its whole context every turn, and
re-prefilling it each time was most of a rollout's work (12.6 positions prefilled per sampled token on a 4-turn
trajectory). The engine keeps each sequence's KV cache in a :class:`~tapo.engines.kv_cache.PrefixKVStore` and
prefills only the new tokens (the tool output's ids and the last sampled token). Rows of one batch then start
from different cached lengths, which ``generate`` cannot take; the loop here lays the batch out as

    [pad | cached KV of row i]  [pad | new ids of row i]  then one sampled column per step

with an attention mask that has holes and position ids from the mask's cumulative sum (as
:mod:`tapo.train.logprobs` computes them), so a row gets the same positions as in one unpadded sequence. Rows
with identical ids (a prompt's n samples at their first turn) are prefilled once, and rows leave the batch as
soon as they stop, their KV stored for the trajectory's next turn.
"""

from __future__ import annotations

import copy
import inspect
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

import psutil
import torch
from transformers import DynamicCache, TemperatureLogitsWarper, TopPLogitsWarper
from transformers.cache_utils import DynamicLayer

from tapo.config.precision import engine_dtype
from tapo.engines.base import Generation, SamplingParams
from tapo.engines.batch_kv import ReservedCache, kv_position_bytes, row_kv
from tapo.engines.batching import AsyncBatcher
from tapo.engines.kv_cache import KVStats, LayerKV, PrefixKVStore, store_bytes
from tapo.engines.state_dict import require_weights
from tapo.engines.stops import Cut, StopScanner, eos_token_ids

Dtype = Literal["auto", "float32", "bfloat16", "bfloat16_if_native"]


def sampling_model(model: Any, dtype: Dtype, own_copy: bool) -> Any:
    """The model the engine samples from: ``model`` itself, or a copy in ``dtype`` (a bf16 copy runs bf16 kernels;
    autocast would re-cast the fp32 weights on every call). ``own_copy`` copies even in the same dtype."""
    resolved = engine_dtype(dtype)  # bfloat16_if_native: bfloat16 or the model's, by the hardware
    target = model.dtype if resolved == "auto" else getattr(torch, resolved)
    if not own_copy and target == model.dtype:
        return model
    return copy.deepcopy(model).to(target).eval().requires_grad_(False)


class HFEngine:
    """``GenerationEngine`` over a transformers causal LM.

    ``update_weights`` copies a state dict into the model in place (cast to the engine's dtype). When the engine
    holds the trainer's own model object (the usual single-process CPU setup) the weights are already current and
    nothing is copied. Either way the stored KV caches are dropped: they belong to the old weights.

    Weights may be loaded while a batch is being generated (asynchronous training's partial rollouts): a lock lets
    ``update_weights`` in only between two forwards, and every sampled token is tagged with the policy ``version``
    of the forward whose logits it was drawn from (``Generation.versions``). The batch's running KV cache is kept
    across the load (positions before it were computed with the old weights, as in PipelineRL and AReaL): the
    recorded log-probs are those of the distribution actually sampled from, which is what the importance
    correction needs.

    ``kv_reuse`` keeps each sequence's KV cache between its turns, up to ``kv_cache_gib`` GiB over all sequences
    (``"auto"``: a share of the memory available at start, :func:`~tapo.engines.kv_cache.store_bytes`);
    ``release(ids)`` drops what a finished trajectory left. ``stats`` counts prefilled, reused, sampled and evicted
    positions (and evicted bytes).

    ``on_tokens``, when set, receives each token of a one-sequence batch as it is sampled (``tapo chat`` shows
    the turn growing); the returned generation is the same.
    """

    on_tokens: Callable[[list[int]], None] | None = None
    loads_while_generating = True  # update_weights may run during a batch (tapo.engines.versioned)

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        batch_size: int = 64,
        dtype: Dtype = "auto",
        kv_reuse: bool = True,
        kv_cache_gib: float | Literal["auto"] = "auto",
        batch_kv_gib: float | Literal["auto"] = "auto",
        own_copy: bool = False,
    ) -> None:
        self.model = sampling_model(model, dtype, own_copy)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.eos_ids = eos_token_ids(model.generation_config.eos_token_id, tokenizer)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else min(self.eos_ids))
        self._batcher = AsyncBatcher(self.generate, batch_size)
        # transformers 5.24 renamed the forward's `past_key_values` to `cache` (the old name is deprecated)
        self._cache_arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        # Sliding-window or linear-attention layers drop or fold positions: only plain full-attention caches are kept.
        # Those also take a batch cache reserved for the batch's length (tapo.engines.batch_kv).
        self.plain = all(type(layer) is DynamicLayer for layer in DynamicCache(config=self.model.config).layers)
        self.store = None
        available = psutil.virtual_memory().available
        if kv_reuse and self.plain:
            self.store = PrefixKVStore(store_bytes(kv_cache_gib, available))
        self.batch_kv_bytes = store_bytes(batch_kv_gib, available)  # one batch's KV at most (its widest row aside)
        self.position_bytes = kv_position_bytes(self.model.config, self.model.dtype)
        self.stats = self.store.stats if self.store is not None else KVStats()
        self.version = 0  # the policy version of the weights now loaded (set by update_weights)
        self._weights = threading.Lock()  # held by each forward and by update_weights
        self._store_lock = threading.Lock()  # the store is used from the batch's thread, the loop and the trainer

    def generate(
        self, prompts: list[list[int]], params: SamplingParams, seeds: Sequence[int | None] | None = None
    ) -> list[Generation]:
        """Continue each prompt once, in batches of ``batch_size``: the batcher behind ``agenerate`` calls it with the
        requests waiting at that moment (each with its own seed); tests and benchmarks call it directly.

        Every row samples from a random generator of its own, seeded by ``seeds[i]`` (default: derived from
        ``params.seed`` and the row's index; None: unseeded). A row's tokens therefore do not depend on which other
        requests share its batch, which is decided by arrival time: tool latency and machine load would otherwise
        change what a seeded run samples."""
        if any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token")
        if seeds is None:
            seeds = [None if params.seed is None else row_seed(params.seed, i) for i in range(len(prompts))]
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        with self._store_lock:
            hits = [self.store.lookup(p) if self.store is not None else (0, None) for p in prompts]
        results: list[Generation | None] = [None] * len(prompts)
        for chunk in self._batches(prompts, hits, params.max_new_tokens):
            generators = [row_generator(seeds[i]) for i in chunk]
            batch = self._generate_batch([prompts[i] for i in chunk], [hits[i] for i in chunk], params, generators)
            for i, generation in zip(chunk, batch, strict=True):
                results[i] = generation
        return [r for r in results if r is not None]

    def _batches(
        self, prompts: list[list[int]], hits: list[tuple[int, list[LayerKV] | None]], max_new_tokens: int
    ) -> list[list[int]]:
        """Prompt indices in batches of similar lengths (less padding; results go back in the callers' order), each
        at most ``batch_size`` rows and at most ``batch_kv_bytes`` of KV: rows x (widest cached part + widest new
        part + ``max_new_tokens``) positions, the cache :meth:`_prefill` reserves. A row wider than the budget on
        its own runs alone."""
        batches: list[list[int]] = []
        batch: list[int] = []
        cached = suffix = 0
        for i in sorted(range(len(prompts)), key=lambda i: len(prompts[i])):
            n = hits[i][0]
            width = max(cached, n) + max(suffix, len(prompts[i]) - n) + max_new_tokens
            over_budget = (len(batch) + 1) * width * self.position_bytes > self.batch_kv_bytes
            if batch and (len(batch) == self.batch_size or over_budget):
                batches.append(batch)
                batch, cached, suffix = [], 0, 0
            batch.append(i)
            cached, suffix = max(cached, n), max(suffix, len(prompts[i]) - n)
        return [*batches, batch] if batch else batches

    async def agenerate(self, prompt: list[int], params: SamplingParams) -> Generation:
        return await self._batcher.submit(prompt, params)

    def release(self, ids: Sequence[int]) -> None:
        """The trajectory ending in ``ids`` is done: free its cached KV now rather than at eviction."""
        if self.store is not None:
            with self._store_lock:
                self.store.release(ids)

    def close(self) -> None:
        """Nothing to stop: the model and the KV store live in this process and go with the engine."""

    @torch.no_grad()
    def _generate_batch(
        self,
        prompts: list[list[int]],
        row_hits: list[tuple[int, list[LayerKV] | None]],
        params: SamplingParams,
        generators: list[torch.Generator],
    ) -> list[Generation]:
        rows = len(prompts)
        # Rows with identical ids are prefilled once (their KV is then repeated); without reuse every row is its own.
        unique = (
            list(dict.fromkeys(tuple(p) for p in prompts)) if self.store is not None else [tuple(p) for p in prompts]
        )
        first = {ids: i for i, ids in enumerate(unique)}
        hit_of = {tuple(p): hit for p, hit in zip(prompts, row_hits, strict=True)}
        hits = [hit_of[ids] for ids in unique]
        with self._weights:
            logits_version = self.version
            # mask [U, W], logits [U, V]; the cache is reserved for all rows
            cache, mask, logits = self._prefill([list(ids) for ids in unique], hits, params.max_new_tokens, rows)
        if len(unique) < rows:
            expand = torch.tensor([first[tuple(p)] for p in prompts], device=mask.device)
            cache.batch_select_indices(expand)
            mask, logits = mask[expand], logits[expand]
        reused = [hits[first[tuple(p)]][0] for p in prompts]
        superseded = [[tuple(p[:n])] if n else [] for p, n in zip(prompts, reused, strict=True)]  # entries extended

        scanners = [StopScanner(self.tokenizer, params.stop, self.eos_ids, params.max_new_tokens, p) for p in prompts]
        tokens: list[list[int]] = [[] for _ in prompts]
        logprobs: list[list[float]] = [[] for _ in prompts]
        versions: list[list[int]] = [[] for _ in prompts]
        cuts: list[Cut | None] = [None] * rows
        active = list(range(rows))  # batch row j holds prompt active[j]
        stream = self.on_tokens if rows == 1 else None
        while True:
            sampled, sampled_logprobs = self._sample(logits, params, [generators[row] for row in active])  # [A], [A]
            keep = []
            rows_now = zip(active, sampled.tolist(), sampled_logprobs.tolist(), strict=True)
            for j, (row, token, logprob) in enumerate(rows_now):
                tokens[row].append(token)
                logprobs[row].append(logprob)
                versions[row].append(logits_version)
                cuts[row] = scanners[row].push(token)
                if cuts[row] is None:
                    keep.append(j)
                elif self.store is not None:  # its KV covers the prompt and every sampled token but this last one
                    with self._store_lock:
                        columns = mask[j].nonzero()[:, 0]  # the mask has one column per cached position
                        self.store.store(prompts[row] + tokens[row][:-1], row_kv(cache, columns, j), superseded[row])
            if stream is not None:
                stream(sampled.tolist())
            if not keep:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep, device=mask.device)
                cache.batch_select_indices(index)
                mask, sampled = mask[index], sampled[index]
                active = [active[j] for j in keep]
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
            with self._weights:
                logits_version = self.version
                logits = self._forward(sampled[:, None], mask, cache, (mask.sum(-1, keepdim=True) - 1))
        self.stats.sampled += sum(cut.length for cut in cuts if cut is not None)
        return [
            Generation(token_ids=t, finish_reason=cut.finish_reason, logprobs=lp, stop=cut.stop, versions=v)
            for t, lp, v, cut in zip(tokens, logprobs, versions, cuts, strict=True)
            if cut is not None
        ]

    def _prefill(
        self,
        prompts: list[list[int]],
        hits: list[tuple[int, list[LayerKV] | None]],
        max_new_tokens: int,
        rows: int,
    ) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
        """One forward over every row's uncached suffix, on top of its cached KV: the cache (reserved for ``rows``
        rows and the ``max_new_tokens`` to come, where the model's layers allow), the attention mask ``[U, C + S]``
        and the next-token logits ``[U, V]``."""
        device = self.model.device
        cached = [n for n, _ in hits]
        width_c = max(cached)  # C
        width_s = max(len(p) - n for p, n in zip(prompts, cached, strict=True))  # S
        ids = torch.full((len(prompts), width_s), self.pad_id, dtype=torch.long)  # [U, S]
        mask = torch.zeros((len(prompts), width_c + width_s), dtype=torch.long)  # [U, C + S]
        for i, (prompt, n) in enumerate(zip(prompts, cached, strict=True)):
            suffix = prompt[n:]
            ids[i, width_s - len(suffix) :] = torch.tensor(suffix)
            mask[i, width_c - n : width_c] = 1
            mask[i, width_c + width_s - len(suffix) :] = 1
        if self.plain:
            cache = ReservedCache(self.model.config, width_c + width_s + max_new_tokens, rows)
            if width_c:
                cache.load_prefixes(hits, width_c)
        else:  # only plain caches are stored, so nothing is cached here: width_c is 0
            cache = DynamicCache(config=self.model.config)
        mask = mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, width_c:]  # [U, S]
        logits = self._forward(ids.to(device), mask, cache, positions)
        self.stats.prefilled += sum(len(p) - n for p, n in zip(prompts, cached, strict=True))
        self.stats.reused += sum(cached)
        return cache, mask, logits

    def _forward(
        self, ids: torch.Tensor, mask: torch.Tensor, cache: DynamicCache, positions: torch.Tensor
    ) -> torch.Tensor:
        """Append ``ids`` ``[B, S]`` to ``cache``; the logits of the last column ``[B, V]`` in float32.

        The last column is kept by its index, not as ``logits_to_keep=1``: that slice ``[B, 1, H]`` of the ``[B, S, H]``
        hidden states is a strided view, and torch 2.13's CPU linear on a strided 3-D input is slow (8x in float32)
        and, in bf16, projects as if every column were kept (at 64 rows x 300 positions, 5 s and 3.2 GiB for one
        prefill's head instead of 7 ms). Indexing copies the column into a contiguous ``[B, 1, H]``."""
        last = torch.tensor([ids.shape[1] - 1], device=ids.device)  # [1]
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=last,
            **{self._cache_arg: cache},
        )
        return out.logits[:, -1].float()

    @staticmethod
    def _sample(
        logits: torch.Tensor, params: SamplingParams, generators: list[torch.Generator]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Next tokens ``[B]`` and their log-probs ``[B]`` under the distribution drawn from (after temperature and
        top-p, as transformers' warpers compute them); row ``b`` draws with ``generators[b]``."""
        if not params.greedy and params.temperature != 1.0:
            logits = TemperatureLogitsWarper(params.temperature)(None, logits)
        if not params.greedy and params.top_p < 1.0:
            logits = TopPLogitsWarper(params.top_p)(None, logits)
        logprobs = torch.log_softmax(logits, dim=-1)  # [B, V]
        if params.greedy:
            tokens = logits.argmax(-1)  # [B]
        else:
            probs = logprobs.exp()  # [B, V]
            draws = [torch.multinomial(row, 1, generator=g) for row, g in zip(probs, generators, strict=True)]
            tokens = torch.cat(draws)  # [B]
        return tokens, logprobs.gather(1, tokens[:, None])[:, 0]

    def update_weights(self, state_dict: dict[str, Any], version: int | None = None) -> None:
        """Copy ``state_dict`` in (or check that it is already the engine's own storage), between two forwards of
        any batch in progress; the weights are then policy ``version`` (default: one more). An empty or partial
        state dict is an error, never a skip: the engine would go on sampling from old weights."""
        require_weights(state_dict)
        with self._weights:
            self._load(state_dict)
            self.version = self.version + 1 if version is None else version

    def _load(self, state_dict: dict[str, Any]) -> None:
        if self.store is not None:
            with self._store_lock:
                self.store.clear()  # computed with the old weights
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


def row_seed(seed: int, row: int) -> int:
    """The seed of row ``row`` of a batch seeded with ``seed`` (rows must not share a random stream)."""
    return (seed * 1_000_003 + row) % 2**63


def row_generator(seed: int | None) -> torch.Generator:
    """A CPU random generator of one row: seeded, or (``None``) seeded from torch's global generator."""
    generator = torch.Generator()
    return generator.manual_seed(seed if seed is not None else int(torch.randint(2**62, ()).item()))


def _tied_names(model: Any) -> set[str]:
    """Parameters that alias another (tied embeddings): a state dict may omit them."""
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return set(tied) if isinstance(tied, dict | list | set | tuple) else set()
