"""What both trainers (DAPO and the SFT warm start) build the same way: accelerator, policy, optimizer, schedule.

accelerate owns devices and distribution, so the same code runs as one CPU process, as
``accelerate launch --num_processes 2`` on CPU (gloo) and under FSDP / DeepSpeed ZeRO-3 on GPUs.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, FullyShardedDataParallelPlugin
from accelerate.utils import DistributedType, ProjectConfiguration, parse_flag_from_env, set_seed
from transformers import AutoModelForCausalLM, AutoTokenizer, get_constant_schedule_with_warmup

from tapo.config.precision import autocast_bf16
from tapo.config.schema import ModelConfig, TapoConfig
from tapo.models.resolve import resolve_model

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def make_accelerator(config: TapoConfig, run_root: Path) -> Accelerator:
    """One accelerator per run; bf16 autocast only when asked (GPUs, bf16-capable CPUs: docs/training.md)."""
    tracker = None if config.trainer.tracker == "none" else config.trainer.tracker
    on_cpu = not (torch.cuda.is_available() or torch.xpu.is_available())
    accelerator = Accelerator(
        # Without an accelerator, processes started by torchrun (``accelerate launch --multi_gpu``) form a gloo
        # group on the CPU; accelerate only does that when told the run is on the CPU.
        cpu=on_cpu,
        mixed_precision="bf16" if autocast_bf16(config.trainer.bf16) else "no",
        log_with=tracker,
        project_config=ProjectConfiguration(project_dir=str(run_root), logging_dir=str(run_root / "tracker")),
    )
    if on_cpu and accelerator.num_processes > 1 and parse_flag_from_env("ACCELERATE_USE_FSDP"):
        shard_on_cpu(accelerator)
    # Same seed everywhere: every process draws the same prompts; sampling differs by rank via the engine seed.
    set_seed(config.run.seed)
    return accelerator


def shard_on_cpu(accelerator: Accelerator) -> None:
    """Turn a CPU run launched with an FSDP config into a real FSDP 2 run over gloo.

    accelerate builds FSDP for GPUs only: on CPU it silently trains with DDP, so a sharded run could never be
    tested without a GPU. FSDP 2 (``fully_shard``) runs on CPU, so the plugin accelerate would have built from the
    launcher's ``FSDP_*`` variables is installed here. FSDP 1 cannot run on CPU (it needs a device id).
    """
    plugin = FullyShardedDataParallelPlugin(sync_module_states=False, cpu_ram_efficient_loading=False)
    if plugin.fsdp_version != 2:
        raise ValueError(f"FSDP on CPU needs fsdp_version: 2 in the accelerate config, got {plugin.fsdp_version}")
    accelerator.state.distributed_type = DistributedType.FSDP
    accelerator.state.fsdp_plugin = plugin


def load_policy(model_cfg: ModelConfig, device: torch.device | None = None) -> tuple[Any, Any]:
    """The policy model (optionally with LoRA adapters and gradient checkpointing) and its tokenizer."""
    path = resolve_model(model_cfg.name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=_DTYPES[model_cfg.dtype])
    model.config.use_cache = False
    if model_cfg.trainable_layers is not None:
        if model_cfg.lora.enabled:
            raise ValueError("model.trainable_layers and model.lora.enabled are alternatives: set one of them")
        freeze_lower_layers(model, model_cfg.trainable_layers)
    if model_cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if model_cfg.lora.enabled:
        from peft import LoraConfig, get_peft_model

        lora = model_cfg.lora
        model = get_peft_model(
            model,
            LoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=list(lora.target_modules),
                task_type="CAUSAL_LM",
            ),
        )
        if model_cfg.gradient_checkpointing:
            model.enable_input_require_grads()
    if device is not None:
        model.to(device)
    return model, tokenizer


def freeze_lower_layers(model: Any, trainable_layers: int) -> None:
    """Train only the top ``trainable_layers`` decoder layers and the final norm; freeze the rest.

    Backward then stops at the lowest trainable layer, which roughly halves the cost of a training step
    on a CPU, where compute, not memory, is the budget. The (tied) embeddings stay frozen.
    """
    decoder = model.get_decoder()
    layers = decoder.layers
    if trainable_layers > len(layers):
        raise ValueError(f"model.trainable_layers={trainable_layers} but the model has {len(layers)} layers")
    model.requires_grad_(False)
    for layer in layers[len(layers) - trainable_layers :]:
        layer.requires_grad_(True)
    norm = getattr(decoder, "norm", None)
    if norm is not None:
        norm.requires_grad_(True)


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; norms and biases (1-D) are not decayed."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up then constant (docs/method.md §4: 10 warm-up steps, then a flat learning rate)."""
    return get_constant_schedule_with_warmup(optimizer, num_warmup_steps=warmup_steps)


def optimizer_step(
    accelerator: Accelerator, model: torch.nn.Module, optimizer: torch.optim.Optimizer, max_grad_norm: float
) -> float:
    """Clip, step, zero; returns the pre-clip gradient norm. The schedule is stepped by the caller (per
    training step in DAPO, where one step holds several mini-batch updates)."""
    grad_norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(grad_norm) if grad_norm is not None else float("nan")


def save_policy(accelerator: Accelerator, model: torch.nn.Module, tokenizer: Any, out_dir: Path) -> None:
    """A plain HF checkpoint (LoRA merged in) that ``resolve_model`` and every engine can load."""
    state = accelerator.get_state_dict(model)  # gathers FSDP / ZeRO-3 shards on the main process
    if not accelerator.is_main_process:
        return
    unwrapped = accelerator.unwrap_model(model)
    if hasattr(unwrapped, "merge_and_unload"):  # peft: write the merged base model, not an adapter
        merged = copy.deepcopy(unwrapped).merge_and_unload()
        merged.save_pretrained(out_dir, safe_serialization=True)
    else:
        unwrapped.save_pretrained(out_dir, state_dict=state, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def prepare_for_training(
    accelerator: Accelerator, model: Any, lr: float, weight_decay: float, warmup_steps: int
) -> tuple[Any, Any, torch.optim.lr_scheduler.LRScheduler]:
    """Wrap model and optimizer for the device/distribution; the schedule is only registered for checkpoints.

    It is not ``prepare``-d because accelerate would step it once per process per call, making warm-up
    depend on the number of processes.
    """
    optimizer = build_optimizer(model, lr, weight_decay)
    scheduler = build_scheduler(optimizer, warmup_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    return model, optimizer, scheduler
