"""Policy weights on their way from the trainer to an engine."""

from __future__ import annotations

from typing import Any


def require_weights(state_dict: dict[str, Any]) -> None:
    """An empty state dict is an error in every engine, never a skip: the engine would go on sampling from its
    old weights."""
    if not state_dict:
        raise ValueError("empty state dict: the engine would keep sampling from its old weights")


def unique_cpu_tensors(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Contiguous CPU tensors with tied weights (embeddings = LM head) kept once, for an engine that keeps its own
    copy (vLLM): its loader ties them again, and safetensors refuses two names for one storage."""
    require_weights(state_dict)
    seen: set[int] = set()
    unique = {}
    for name, tensor in state_dict.items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            unique[name] = tensor.detach().cpu().contiguous()
    return unique
