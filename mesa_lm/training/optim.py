"""AdamW parameter groups and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..layers.gates import GateProjection
from ..layers.norms import RMSNorm

NO_DECAY_MODULES = (nn.LayerNorm, RMSNorm, GateProjection)
NO_DECAY_NAMES = ("log_lambda", "lambda_theta")  # the mesa regulariser


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weight decay on weight matrices and embeddings; none on norms, biases, mesa regulariser
    and gate parameters."""
    no_decay: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if isinstance(module, NO_DECAY_MODULES) or name == "bias" or name in NO_DECAY_NAMES:
                no_decay.add(id(param))
    decay_params = [p for p in model.parameters() if p.requires_grad and id(p) not in no_decay]
    other_params = [p for p in model.parameters() if p.requires_grad and id(p) in no_decay]
    return [
        {"params": decay_params, "weight_decay": weight_decay},
        {"params": other_params, "weight_decay": 0.0},
    ]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float, cosine: bool = True) -> float:
    """Learning-rate multiplier: linear 0 -> 1 over `warmup_steps`, then cosine down to `min_ratio` (or constant)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if not cosine:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer_and_schedule(model: nn.Module, args) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.AdamW(
        parameter_groups(model, args.weight_decay),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
    )
    min_ratio = args.min_learning_rate / args.learning_rate
    cosine = args.lr_scheduler_type == "cosine"
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, args.warmup_steps, args.max_steps, min_ratio, cosine)
    )
    return optimizer, schedule
