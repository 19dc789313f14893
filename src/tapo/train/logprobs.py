"""Per-token log-probs and entropies of response tokens, for padded batches of prompt + response ids.

Prompts are left-padded and responses right-padded so every response starts in the same column; the
model only hands the last ``T + 1`` hidden states to its output head (``logits_to_keep``). Even those, as
``[B, T, V]`` float32 logits with their log-softmax and the entropy's softmax, were most of a CPU run's memory
(several GB at a 49K vocabulary): the head here projects a chunk of positions at a time and keeps only the
chosen token's log-prob and the entropy (:func:`response_logprobs`). Position ids are computed from the
attention mask so padding never shifts positions: the same sequence gets the same log-probs whatever
batch it is in (the rollout engine, the old-policy pass and the update must agree token for token).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Self

import torch
from torch.utils.checkpoint import checkpoint

from tapo.train.packing import pack_rows


@dataclass
class ResponseBatch:
    """Prompt + response sequences laid out for one forward pass; ``response_mask`` ``[B, T]`` is 1 on real response
    tokens (T: the longest response), whatever the layout."""

    input_ids: torch.Tensor
    response_mask: torch.Tensor

    @property
    def response_len(self) -> int:
        return self.response_mask.shape[1]

    def to(self, device: torch.device | str) -> Self:
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})


@dataclass
class TokenBatch(ResponseBatch):
    """Padded: ``input_ids``/``attention_mask`` ``[B, P + T]``, every response starting in column P."""

    attention_mask: torch.Tensor


@dataclass
class PackedBatch(ResponseBatch):
    """Packed (:mod:`tapo.train.packing`): ``input_ids``/``position_ids`` ``[R, W]``; ``positions`` ``[B, T]``: for
    response token t of sequence b, the flat index (row x W + column) of the position whose hidden state predicts it
    (0 where ``response_mask`` is 0); ``targets`` ``[B, T]``: the response tokens, in the sequences' own order."""

    position_ids: torch.Tensor
    positions: torch.Tensor
    targets: torch.Tensor


def _check_pairs(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]]) -> None:
    if len(prompts) != len(responses) or not prompts:
        raise ValueError(f"need as many prompts as responses (and at least one): {len(prompts)} vs {len(responses)}")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (the first response token is predicted from it)")


def pad_batch(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int) -> TokenBatch:
    """Left-pad the prompts and right-pad the responses to one rectangle."""
    _check_pairs(prompts, responses)
    width_p = max(len(p) for p in prompts)  # P
    width_r = max(1, max(len(r) for r in responses))  # T
    rows = len(prompts)  # B
    ids = torch.full((rows, width_p + width_r), pad_id, dtype=torch.long)  # [B, P + T]
    attn = torch.zeros((rows, width_p + width_r), dtype=torch.long)  # [B, P + T]
    resp_mask = torch.zeros((rows, width_r), dtype=torch.long)  # [B, T]
    for i, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        start = width_p - len(prompt)
        ids[i, start:width_p] = torch.tensor(list(prompt), dtype=torch.long)
        ids[i, width_p : width_p + len(response)] = torch.tensor(list(response), dtype=torch.long)
        attn[i, start : width_p + len(response)] = 1
        resp_mask[i, : len(response)] = 1
    return TokenBatch(ids, resp_mask, attn)


def pack_batch(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int) -> PackedBatch:
    """Pack prompt + response sequences into rows (:func:`tapo.train.packing.pack_rows`), positions reset per
    sequence; the rest of a row is padding with positions of its own, after every real sequence."""
    _check_pairs(prompts, responses)
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses, strict=True)]
    rows = pack_rows(lengths)
    width = max(lengths)  # W
    response_width = max(1, max(len(r) for r in responses))  # T
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [R, W]
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)  # [R, W]
    positions = torch.zeros((len(prompts), response_width), dtype=torch.long)  # [B, T]
    targets = torch.full((len(prompts), response_width), pad_id, dtype=torch.long)  # [B, T]
    mask = torch.zeros((len(prompts), response_width), dtype=torch.long)  # [B, T]
    for r, members in enumerate(rows):
        start = 0
        for b in members:
            sequence = [*prompts[b], *responses[b]]
            ids[r, start : start + len(sequence)] = torch.tensor(sequence, dtype=torch.long)
            position_ids[r, start : start + len(sequence)] = torch.arange(len(sequence))
            n, first = len(responses[b]), start + len(prompts[b])  # the response's first column in the row
            positions[b, :n] = r * width + torch.arange(first - 1, first - 1 + n)  # each predicted by the one before
            targets[b, :n] = torch.tensor(list(responses[b]), dtype=torch.long)
            mask[b, :n] = 1
            start += len(sequence)
        position_ids[r, start:] = torch.arange(width - start)  # the row's padding: a sequence of its own
    return PackedBatch(ids, mask, position_ids, positions, targets)


def pad_rows(rows: Sequence[Sequence[float]], width: int, value: float = 0.0) -> torch.Tensor:
    """Right-pad ragged per-token rows (masks, log-probs) to ``[B, width]`` floats."""
    out = torch.full((len(rows), width), value, dtype=torch.float32)  # [B, width]
    for i, row in enumerate(rows):
        if len(row) > width:
            raise ValueError(f"row {i} has {len(row)} values, more than the batch width {width}")
        out[i, : len(row)] = torch.tensor([value if v is None else float(v) for v in row], dtype=torch.float32)
    return out


DEFAULT_CHUNK_TOKENS = 512
"""Positions projected onto the vocabulary at once (``trainer.logprob_chunk_tokens``): 512 x 49,152 float32 logits
are 100 MB, against 1.6 GB for a whole micro-batch of 8 x 1,024 response tokens."""


def response_logprobs(
    model: torch.nn.Module,
    batch: TokenBatch | PackedBatch,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs ``[B, T]`` of each response token (0 on padding), and optionally the policy entropy there.

    Logits are divided by the sampling temperature so the ratio compares the distribution that was
    actually sampled from. The entropy is a statistic only and is computed without gradient.

    The forward goes through ``model`` itself (a DDP, FSDP, DeepSpeed or peft wrapper keeps its hooks and
    gradients), but its output head never builds the ``[B, T, V]`` logits: :class:`ChosenTokenHead` takes the
    final hidden states and projects ``chunk_tokens`` real response positions at a time, each under activation
    checkpointing, so neither the forward nor the backward holds more than one chunk's logits.

    A packed batch goes in without an attention mask, so the model builds the block-diagonal one from its position
    ids; the head then keeps every position's hidden state and picks each response token's by its index.
    """
    head = output_head(model)
    if isinstance(batch, PackedBatch):
        inputs = {"input_ids": batch.input_ids, "position_ids": batch.position_ids}
        chosen = ChosenTokenHead(
            head, batch.targets, batch.response_mask, temperature, with_entropy, chunk_tokens, batch.positions
        )
        keep = 0  # every position: the response tokens' predictors are anywhere in a row
    else:
        width = batch.response_len  # T
        position_ids = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)  # [B, P + T]
        inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "position_ids": position_ids}
        targets = batch.input_ids[:, -width:]  # [B, T]
        chosen = ChosenTokenHead(head, targets, batch.response_mask, temperature, with_entropy, chunk_tokens)
        keep = width + 1
    with chosen:
        out = model(**inputs, logits_to_keep=keep, use_cache=False)
    stats = out.logits  # [B, T, 2]: (log-prob, entropy) of each response token, in place of the logits
    return stats[..., 0], (stats[..., 1].detach() if with_entropy else None)


def output_head(model: torch.nn.Module) -> torch.nn.Module:
    """The module that projects hidden states onto the vocabulary, under any accelerate or peft wrapper."""
    from accelerate.utils import extract_model_from_parallel

    inner = extract_model_from_parallel(model)
    if getattr(getattr(inner, "config", None), "final_logit_softcapping", None):
        raise ValueError(f"{type(inner).__name__} caps its logits after the head: chunked log-probs do not apply")
    head = inner.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(inner).__name__} has no output embeddings to compute log-probs with")
    return head


class ChosenTokenHead:
    """While entered, the output head returns ``[B, T, 2]`` (log-prob, entropy) of the chosen tokens instead of
    ``[B, T + 1, V]`` logits.

    A forward pre-hook keeps the hidden states the model hands its head (``[B, T + 1, H]``, the last ``T + 1``
    columns: ``logits_to_keep``) and passes on none of them, so the head projects nothing; a forward hook then
    computes the statistics from the kept states in chunks (:func:`chosen_token_stats`) and returns them as the
    head's output. Both run inside the head's own call, so a sharded head's weights are gathered, and the result
    flows out of the model's forward as its ``logits``, where the wrappers' backward hooks expect it."""

    def __init__(
        self,
        head: torch.nn.Module,
        targets: torch.Tensor,
        mask: torch.Tensor,
        temperature: float,
        with_entropy: bool,
        chunk_tokens: int,
        positions: torch.Tensor | None = None,
    ) -> None:
        self.head = head
        self.positions = positions  # [B, T] flat indices into the head's input, for packed rows; None: the last T + 1
        self.targets = targets  # [B, T]
        self.mask = mask  # [B, T]
        self.temperature = temperature
        self.with_entropy = with_entropy
        self.chunk_tokens = chunk_tokens
        self._hidden: torch.Tensor | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> ChosenTokenHead:
        self._handles = [
            self.head.register_forward_pre_hook(self._keep_input),
            # first among the forward hooks: before a sharding wrapper's post-forward frees the gathered weights
            self.head.register_forward_hook(self._replace_output, prepend=True),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._hidden = [], None

    def _keep_input(self, module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        hidden = args[0]  # [B, T + 1, H]: column t predicts response token t; the last column predicts nothing
        if self.positions is None:
            self._hidden = hidden[:, :-1]  # [B, T, H]
        else:  # packed: [R, W, H], every position; each response token's predictor picked by its flat index
            self._hidden = hidden.reshape(-1, hidden.shape[-1])[self.positions]  # [B, T, H]
        return (hidden[:, :0], *args[1:])  # [B or R, 0, H]: the head projects no position

    def _replace_output(self, module: torch.nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        hidden, self._hidden = self._hidden, None
        if hidden is None:
            raise RuntimeError("the output head ran without its input being kept")
        return chosen_token_stats(
            module.forward,  # the head's own computation (LoRA included), without running these hooks again
            hidden,
            self.targets,
            self.mask,
            self.temperature,
            self.with_entropy,
            self.chunk_tokens,
        )


def chosen_token_stats(
    project: Callable[[torch.Tensor], torch.Tensor],
    hidden: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    temperature: float,
    with_entropy: bool,
    chunk_tokens: int,
) -> torch.Tensor:
    """``[B, T, 2]`` float32: log-prob of ``targets`` and entropy (0 unless ``with_entropy``, no gradient) at each
    position where ``mask`` is 1, zeros elsewhere, projecting ``chunk_tokens`` masked positions at a time.

    Padding is never projected. With gradients on, each chunk is checkpointed: the backward recomputes that chunk's
    logits instead of keeping them, one chunk at a time."""
    rows, width, size = hidden.shape  # B, T, H
    real = mask.reshape(-1).nonzero()[:, 0]  # [N] flat indices of real response positions
    states = hidden.reshape(-1, size)[real]  # [N, H]
    chosen = targets.reshape(-1)[real]  # [N]
    checkpointed = torch.is_grad_enabled() and states.requires_grad
    pieces = []
    for start in range(0, len(real), chunk_tokens) or [0]:  # one (empty) chunk keeps the graph when N = 0
        part = (states[start : start + chunk_tokens], chosen[start : start + chunk_tokens])
        if checkpointed:
            pieces.append(checkpoint(_chunk_stats, project, *part, temperature, with_entropy, use_reentrant=False))
        else:
            pieces.append(_chunk_stats(project, *part, temperature, with_entropy))
    stats = torch.cat(pieces)  # [N, 2]
    out = stats.new_zeros(rows * width, 2).index_copy(0, real, stats)  # [B * T, 2]
    return out.view(rows, width, 2)


def _chunk_stats(
    project: Callable[[torch.Tensor], torch.Tensor],
    states: torch.Tensor,
    chosen: torch.Tensor,
    temperature: float,
    with_entropy: bool,
) -> torch.Tensor:
    """``[n, 2]``: (log-prob of ``chosen``, entropy) from ``states`` ``[n, H]``, through ``[n, V]`` logits."""
    logits = project(states).float()  # [n, V]
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    log_norm = torch.logsumexp(logits, dim=-1)  # [n]
    logprobs = logits.gather(-1, chosen[:, None])[:, 0] - log_norm  # [n]
    if not with_entropy:
        return torch.stack([logprobs, torch.zeros_like(log_norm)], dim=-1)
    with torch.no_grad():
        detached = logits.detach()
        entropy = log_norm.detach() - (torch.softmax(detached, dim=-1) * detached).sum(-1)  # [n]
    return torch.stack([logprobs, entropy], dim=-1)
