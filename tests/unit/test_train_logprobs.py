"""Response log-probs: padding-invariant, equal to a plain unpadded forward pass, masked on padding."""

from __future__ import annotations

import pytest
import torch

from tapo.train.logprobs import pad_batch, pad_rows, response_logprobs


def _reference(model, prompt: list[int], response: list[int]) -> torch.Tensor:
    ids = torch.tensor([prompt + response])
    logits = model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    positions = range(len(prompt) - 1, len(prompt) + len(response) - 1)
    return torch.stack([logp[p, ids[0, p + 1]] for p in positions])


def test_padded_batch_matches_unpadded_forward(tiny_model, tokenizer) -> None:
    prompts = [[1, 2, 3, 4, 5], [7, 8]]
    responses = [[10, 11], [12, 13, 14, 15]]
    batch = pad_batch(prompts, responses, pad_id=tokenizer.pad_token_id)
    assert batch.input_ids.shape == (2, 9) and batch.response_mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    with torch.no_grad():
        logp, entropy = response_logprobs(tiny_model, batch, with_entropy=True)
        for i in range(2):
            ref = _reference(tiny_model, prompts[i], responses[i])
            assert logp[i, : len(responses[i])] == pytest.approx(ref, abs=1e-4)
    assert logp[0, 2:].abs().sum().item() == 0.0
    assert entropy is not None and (entropy[1] > 0).all() and entropy[0, 2:].abs().sum().item() == 0.0
    assert entropy.max().item() <= torch.log(torch.tensor(float(len(tokenizer)))).item() + 1e-3


def test_logprobs_carry_gradient(tiny_model) -> None:
    batch = pad_batch([[1, 2]], [[3, 4]], pad_id=0)
    logp, entropy = response_logprobs(tiny_model, batch)
    logp.sum().backward()
    assert entropy is None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_model.parameters())


def test_bad_batches_raise() -> None:
    with pytest.raises(ValueError, match="as many"):
        pad_batch([[1]], [], pad_id=0)
    with pytest.raises(ValueError, match="at least one token"):
        pad_batch([[]], [[1]], pad_id=0)
    with pytest.raises(ValueError, match="more than"):
        pad_rows([[1, 2, 3]], width=2)
    assert pad_rows([[1, None]], width=3).tolist() == [[1.0, 0.0, 0.0]]
