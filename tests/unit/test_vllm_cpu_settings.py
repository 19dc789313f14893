"""The CPU KV-cache size the vLLM engine asks for, from the model's config and the free RAM (no vLLM needed)."""

from __future__ import annotations

import pytest
from transformers import LlamaConfig

from tapo.engines.vllm_engine import GIB, KV_MAX_BYTES, kv_cache_bytes


@pytest.fixture
def model_dir(tmp_path):
    # SmolLM2-135M's attention shape: 30 layers, 3 KV heads of 64
    LlamaConfig(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576).save_pretrained(
        tmp_path
    )
    return str(tmp_path)


def test_kv_cache_is_a_quarter_of_free_ram_within_bounds(model_dir):
    per_token = 2 * 30 * 3 * 64 * 2  # keys and values, every layer, bf16
    assert kv_cache_bytes(model_dir, "auto", 2048, 6 * GIB) == 1.5 * GIB
    assert kv_cache_bytes(model_dir, "float32", 2048, 6 * GIB) == 1.5 * GIB
    assert kv_cache_bytes(model_dir, "auto", 2048, 1000 * GIB) == KV_MAX_BYTES  # resident memory: capped
    # little RAM: at least one full sequence, though it is more than a quarter
    one = per_token * 8192
    assert kv_cache_bytes(model_dir, "auto", 8192, 2 * one) == one
    assert kv_cache_bytes(model_dir, "float32", 8192, 4 * one) == 2 * one


def test_kv_cache_that_cannot_hold_one_sequence_is_refused(model_dir):
    with pytest.raises(ValueError, match="max_model_len or free memory"):
        kv_cache_bytes(model_dir, "auto", 8192, 100 * 2**20)


def test_every_vllm_setting_is_an_engine_keyword():
    """build_engine passes the config section as keywords: a new field needs its constructor argument."""
    import inspect

    from tapo.config.schema import VLLMEngineConfig
    from tapo.engines.vllm_engine import VLLMEngine

    keywords = set(inspect.signature(VLLMEngine.__init__).parameters)
    assert set(VLLMEngineConfig.model_fields) - {"kind"} <= keywords
