"""A model's architecture without its weights: what a dry run needs to size a real run and build a stand-in.

``tapo.models.resolve.read_architecture`` reads it from the model's ``config.json`` where one is at hand (a local
directory, the hub cache), else from :data:`KNOWN`, the models the shipped configs name, so a laptop without the
3B/7B checkpoints can still check their configs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Architecture:
    """The shape of a decoder-only transformer (the fields of a Llama/Qwen2 ``config.json``)."""

    model_type: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    head_dim: int
    attention_bias: bool = False

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Architecture:
        heads = int(config["num_attention_heads"])
        return cls(
            model_type=str(config["model_type"]),
            hidden_size=int(config["hidden_size"]),
            intermediate_size=int(config["intermediate_size"]),
            num_hidden_layers=int(config["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(config.get("num_key_value_heads") or heads),
            vocab_size=int(config["vocab_size"]),
            max_position_embeddings=int(config["max_position_embeddings"]),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            # Qwen3 and Gemma state a head dim that is not hidden / heads; Llama and Qwen2 leave it implied
            head_dim=int(config.get("head_dim") or int(config["hidden_size"]) // heads),
            # Qwen2 has q/k/v biases without saying so in its config; Llama says attention_bias
            attention_bias=bool(config.get("attention_bias", config["model_type"] == "qwen2")),
        )

    @property
    def layer_parameters(self) -> int:
        """Parameters of one decoder layer: attention (grouped K/V), SwiGLU MLP, two norms."""
        h, q, kv = self.hidden_size, self.head_dim * self.num_attention_heads, self.head_dim * self.num_key_value_heads
        attention = 2 * h * q + 2 * h * kv + ((q + 2 * kv) if self.attention_bias else 0)
        return attention + 3 * h * self.intermediate_size + 2 * h

    @property
    def parameters(self) -> int:
        """Parameter count: embeddings, the decoder layers, final norm, head."""
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        return embeddings + self.num_hidden_layers * self.layer_parameters + self.hidden_size


_QWEN25 = {"model_type": "qwen2", "attention_bias": True}
KNOWN: dict[str, dict[str, Any]] = {
    # the published config.json of each (huggingface.co/Qwen/<name>/blob/main/config.json)
    "Qwen/Qwen2.5-3B": _QWEN25
    | {
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": True,
    },
    "Qwen/Qwen2.5-7B": _QWEN25
    | {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
    },
}
