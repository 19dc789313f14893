"""A tiny randomly initialised Llama-architecture model with the SmolLM2 tokenizer, for fast tests.

Built from a config (no weights are downloaded) so unit tests of the rollout, trainer and evaluation
exercise real transformers code in milliseconds instead of seconds.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tapo.models.architecture import Architecture
from tapo.models.store import DEFAULT_MODEL, ensure_stored


def load_store_tokenizer(name: str = DEFAULT_MODEL) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(ensure_stored(name))


def build_tiny_model(
    tokenizer: PreTrainedTokenizerBase,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
) -> PreTrainedModel:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def build_stand_in(
    architecture: Architecture,
    tokenizer: PreTrainedTokenizerBase,
    hidden_size: int = 64,
    layers: int = 2,
    seed: int = 0,
) -> PreTrainedModel:
    """A tiny random model of ``architecture``'s family (its model_type, grouped K/V ratio, tied or untied head,
    context length) with ``tokenizer``'s vocabulary: what a dry run trains in place of the real weights."""
    heads = 4
    ratio = max(1, architecture.num_attention_heads // architecture.num_key_value_heads)
    config = AutoConfig.for_model(
        architecture.model_type,
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // ratio),
        max_position_embeddings=architecture.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=architecture.tie_word_embeddings,
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def save_tiny_checkpoint(out_dir: Path, seed: int = 0) -> Path:
    """Write a tiny random checkpoint (model + SmolLM2 tokenizer) that any model argument accepts."""
    tokenizer = load_store_tokenizer()
    model = build_tiny_model(tokenizer, seed=seed)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir
