"""Normalisation layers of the residual stream and of mixer outputs."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dimension, with a learned scale; computed in float32 (or float64)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.to(torch.promote_types(x.dtype, torch.float32))  # bf16 -> float32; a float64 model stays float64
        wide = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps)
        return (wide * self.weight.to(wide.dtype)).to(x.dtype)


def make_norm(norm_type: str, dim: int, eps: float, bias: bool = True) -> nn.Module:
    """`none` -> identity, `layernorm` -> LayerNorm, `rmsnorm` -> RMSNorm."""
    if norm_type == "layernorm":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    if norm_type == "rmsnorm":
        return RMSNorm(dim, eps=eps)
    if norm_type == "none":
        return nn.Identity()
    raise ValueError(f"norm_type={norm_type!r} is invalid: allowed values are 'none', 'layernorm', 'rmsnorm'")
