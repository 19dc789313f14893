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


def _full_logits_reference(model, batch, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The full-logits computation chunking replaced: ``[B, T, V]`` float32 logits, log-softmax and softmax."""
    width = batch.response_len
    positions = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)
    every = model(batch.input_ids, attention_mask=batch.attention_mask, position_ids=positions).logits  # [B, P+T, V]
    logits = every[:, -width - 1 : -1, :].float() / temperature  # [B, T, V]
    log_norm = torch.logsumexp(logits, dim=-1)
    token = logits.gather(-1, batch.input_ids[:, -width:].unsqueeze(-1)).squeeze(-1)
    logp = (token - log_norm) * batch.response_mask
    probs = torch.softmax(logits.detach(), dim=-1)
    entropy = (log_norm.detach() - (probs * logits.detach()).sum(-1)) * batch.response_mask
    return logp, entropy


def _llama(vocab: int, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).to(dtype).train()


def _gradient_tolerance(grads: dict[str, torch.Tensor]) -> float:
    """1e-6 of the largest gradient entry (at least 1e-6): the absolute tolerance of a chunked gradient."""
    return 1e-6 * max(1.0, max(g.abs().max().item() for g in grads.values()))


@pytest.mark.parametrize(("temperature", "chunk"), [(1.0, 3), (0.7, 2), (1.3, 512)])
@pytest.mark.parametrize(("vocab", "dtype"), [(256, torch.float32), (49152, torch.float64)])
def test_chunked_logprobs_entropy_and_gradients_equal_full_logits(temperature, chunk, vocab, dtype) -> None:
    """Chunks of positions from the hidden states give the full-logits log-probs, entropy and gradients to 1e-6.

    float32 with a small vocabulary; SmolLM2's 49,152 entries in float64, because in float32 a 49K-long sum rounds
    differently in chunks of 3 rows than in one matrix (~4e-6 of the largest gradient; 0 in float64). Gradients
    are compared to 1e-6 of the largest gradient entry plus 1e-6 relative: float32 also sums the positions'
    contributions to the tied embedding in another order in chunks, and by how much that rounds depends on the
    CPU's kernels (on an AVX-512 Xeon, 3.3e-6 on an entry of 5.8: 7 ulps; within 1e-6 on an AVX2 EPYC)."""
    model = _llama(vocab, dtype)
    batch = pad_batch([[1, 2, 3, 4, 5], [7, 8], [9]], [[10, 11], [12, 13, 14, 15, 16], [17, 18, 19]], pad_id=0)
    weights = torch.linspace(-1.0, 2.0, batch.response_mask.numel(), dtype=dtype).view(batch.response_mask.shape)
    ref_logp, ref_entropy = _full_logits_reference(model, batch, temperature)
    (ref_logp * weights).sum().backward()
    ref_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    logp, entropy = response_logprobs(model, batch, temperature, with_entropy=True, chunk_tokens=chunk)
    (logp * weights).sum().backward()
    assert logp.shape == entropy.shape == batch.response_mask.shape
    assert torch.allclose(logp, ref_logp.float(), atol=1e-6, rtol=0)
    assert torch.allclose(entropy, ref_entropy.float(), atol=1e-6, rtol=0)
    tolerance = _gradient_tolerance(ref_grads)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, ref_grads[name], atol=tolerance, rtol=1e-6), name


def test_the_head_never_projects_the_whole_batch(tokenizer) -> None:
    """The output head sees at most one chunk of positions per call, and no padding."""
    from tapo.models.tiny import build_tiny_model

    model = build_tiny_model(tokenizer).float()
    batch = pad_batch([[1, 2, 3]] * 4, [[4, 5, 6, 7, 8], [4], [4, 5], [4, 5, 6]], pad_id=0)
    seen: list[int] = []
    head = model.get_output_embeddings()
    original = head.forward
    head.forward = lambda x: seen.append(x.numel() // x.shape[-1]) or original(x)  # positions projected
    logp, _ = response_logprobs(model, batch, chunk_tokens=4)
    logp.sum().backward()
    # the model's own call projects no position, then 11 real positions of 20 in chunks; the backward recomputes them
    assert seen[:4] == [0, 4, 4, 3] and max(seen) == 4
    assert not head._forward_hooks and not head._forward_pre_hooks  # the hooks leave with the call


def test_empty_responses_keep_the_graph(tiny_model) -> None:
    batch = pad_batch([[1, 2]], [[]], pad_id=0)
    logp, _ = response_logprobs(tiny_model, batch)
    assert logp.tolist() == [[0.0]] and logp.requires_grad


def test_a_peft_model_with_lora_on_its_head_gives_the_same_values_and_gradients() -> None:
    """Through peft's wrapper, with adapters on the attention and on the output head itself."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        _llama(256, torch.float32),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "lm_head"], init_lora_weights=False),
    )
    batch = pad_batch([[1, 2, 3], [4]], [[5, 6], [7, 8, 9]], pad_id=0)
    ref_logp, _ = _full_logits_reference(model, batch, 0.8)
    ref_logp.sum().backward()
    ref_grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    logp, _ = response_logprobs(model, batch, 0.8, chunk_tokens=2)
    logp.sum().backward()
    assert torch.allclose(logp, ref_logp, atol=1e-6, rtol=0)
    assert any("lm_head" in name for name in ref_grads)
    tolerance = _gradient_tolerance(ref_grads)
    for name, grad in ref_grads.items():
        assert torch.allclose(dict(model.named_parameters())[name].grad, grad, atol=tolerance, rtol=1e-6), name
