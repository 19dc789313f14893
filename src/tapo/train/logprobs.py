"""Per-token log-probs and entropies of response tokens, for padded batches of prompt + response ids.

Prompts are left-padded and responses right-padded so every response starts in the same column; the
model then only has to project the last ``T + 1`` hidden states onto the vocabulary
(``logits_to_keep``), which is most of the memory of a forward pass. Position ids are computed from the
attention mask so padding never shifts positions: the same sequence gets the same log-probs whatever
batch it is in (the rollout engine, the old-policy pass and the update must agree token for token).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class TokenBatch:
    """``input_ids``/``attention_mask`` ``[B, P + T]``; ``response_mask`` ``[B, T]`` is 1 on real response tokens."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor

    @property
    def response_len(self) -> int:
        return self.response_mask.shape[1]

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(self.input_ids.to(device), self.attention_mask.to(device), self.response_mask.to(device))


def pad_batch(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int) -> TokenBatch:
    """Left-pad the prompts and right-pad the responses to one rectangle."""
    if len(prompts) != len(responses) or not prompts:
        raise ValueError(f"need as many prompts as responses (and at least one): {len(prompts)} vs {len(responses)}")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (the first response token is predicted from it)")
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
    return TokenBatch(ids, attn, resp_mask)


def pad_rows(rows: Sequence[Sequence[float]], width: int, value: float = 0.0) -> torch.Tensor:
    """Right-pad ragged per-token rows (masks, log-probs) to ``[B, width]`` floats."""
    out = torch.full((len(rows), width), value, dtype=torch.float32)  # [B, width]
    for i, row in enumerate(rows):
        if len(row) > width:
            raise ValueError(f"row {i} has {len(row)} values, more than the batch width {width}")
        out[i, : len(row)] = torch.tensor([value if v is None else float(v) for v in row], dtype=torch.float32)
    return out


def response_logprobs(
    model: torch.nn.Module,
    batch: TokenBatch,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs ``[B, T]`` of each response token (0 on padding), and optionally the policy entropy there.

    Logits are divided by the sampling temperature so the ratio compares the distribution that was
    actually sampled from. The entropy is a statistic only and is computed without gradient.
    """
    width = batch.response_len  # T
    position_ids = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)  # [B, P + T]
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=position_ids,
        logits_to_keep=width + 1,
        use_cache=False,
    )
    # out.logits [B, T + 1, V]: column t predicts response token t, so the last column is dropped
    logits = out.logits[:, :-1, :].float()  # [B, T, V]
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    targets = batch.input_ids[:, -width:]  # [B, T]
    log_norm = torch.logsumexp(logits, dim=-1)  # [B, T]
    token_logits = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [B, T]
    logprobs = (token_logits - log_norm) * batch.response_mask  # [B, T]
    entropy = None
    if with_entropy:
        with torch.no_grad():
            probs = torch.softmax(logits.detach(), dim=-1)
            entropy = (log_norm.detach() - (probs * logits.detach()).sum(-1)) * batch.response_mask  # [B, T]
    return logprobs, entropy
