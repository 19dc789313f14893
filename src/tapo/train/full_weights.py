"""The full policy weights on every process that generates, whatever shards them.

After each optimizer step every engine must sample from exactly the new policy. Under DDP each process
already holds the full weights. Under FSDP (1 and 2) and DeepSpeed ZeRO-3 each process holds one shard, and
accelerate's ``get_state_dict`` assembles the full weights on the main process only: an engine on any other
process would be left with the starting policy. Here every process takes part in one all-gather and keeps
the full state dict (on its device) long enough to load it into its engine: a transient full copy per
process, on top of the engine's own copy.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType


class WeightSyncError(RuntimeError):
    """A gather that produced no weights: the engines would go on sampling from the old ones."""


def _zero3(accelerator: Accelerator) -> bool:
    plugin = accelerator.state.deepspeed_plugin
    return plugin is not None and plugin.zero_stage == 3


def is_fsdp_sharded(model: torch.nn.Module) -> bool:
    """Whether FSDP shards ``model``: an FSDP 1 wrapper, or FSDP 2 parameters (DTensors). Read off the model, since
    accelerate's distributed type need not say it (a CPU run: :func:`tapo.train.setup.shard_on_cpu`)."""
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.tensor import DTensor

    return isinstance(model, FullyShardedDataParallel) or any(isinstance(p, DTensor) for p in model.parameters())


def full_state_dict(accelerator: Accelerator, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded state dict of the (prepared) ``model`` on every process; collective under FSDP/ZeRO-3."""
    if is_fsdp_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        # cpu_offload=False: with it, torch keeps the gathered tensors on rank 0 only
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=False))
    elif accelerator.distributed_type == DistributedType.DEEPSPEED and _zero3(accelerator):
        import deepspeed

        unwrapped = accelerator.unwrap_model(model)
        with deepspeed.zero.GatheredParameters(list(unwrapped.parameters()), modifier_rank=None):
            state = {name: tensor.detach().clone() for name, tensor in unwrapped.state_dict().items()}
    else:
        state = accelerator.unwrap_model(model).state_dict()
    if not state:
        raise WeightSyncError(f"process {accelerator.process_index} gathered an empty state dict")
    return state


def fingerprint(state_dict: dict[str, Any]) -> str:
    """A sha256 of names and values (as float32), equal exactly when two copies hold the same weights."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()
