"""Sharded (FSDP2) training state to and from the consolidated form every checkpoint holds.

Under FSDP2 (`fully_shard`, also Accelerate's FSDP2 engine) each parameter is a DTensor of which a process holds one
shard, and so are the optimizer's moment estimates. A checkpoint stores the *full* tensors, in the very format a
single process or DDP writes (`model.safetensors`, `optimizer.state_dict()` keyed by parameter index), so a run
saved under FSDP resumes under any engine and any number of processes, and the reverse.

Gathering is collective: every process calls `full_tensors` on the same structure, in the same order.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributed.tensor import DTensor, distribute_tensor


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether any parameter of `model` is a DTensor (FSDP2 / `fully_shard`)."""
    return any(isinstance(p, DTensor) for p in model.parameters())


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's part of `tensor` (the tensor itself unless it is a DTensor)."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def full_tensors(value: Any) -> Any:
    """`value` (a state dict, nested dicts and lists) with every DTensor gathered into a full plain tensor; other
    entries are returned as they are (no copy), so an unsharded state dict comes back unchanged."""
    if isinstance(value, DTensor):
        return value.full_tensor()
    if isinstance(value, dict):
        return {k: full_tensors(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(full_tensors(v) for v in value)
    return value


def shard_optimizer_state(state_dict: dict, optimizer: torch.optim.Optimizer) -> dict:
    """A full optimizer state dict (indices in parameter order across groups, as `Optimizer.state_dict` numbers
    them) with each state tensor shaped like a sharded parameter cut to that parameter's placement on this process.

    Every process holds the full tensors (read from the checkpoint), so cutting needs no communication."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sharded = {}
    for index, entries in state_dict["state"].items():
        param = params[int(index)]
        sharded[index] = {
            name: distribute_tensor(t.to(param.device), param.device_mesh, param.placements, src_data_rank=None)
            if isinstance(param, DTensor) and isinstance(t, torch.Tensor) and t.shape == param.shape
            else t
            for name, t in entries.items()
        }
    return {**state_dict, "state": sharded}
