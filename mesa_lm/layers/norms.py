"""Normalisation layers of the residual stream and of mixer outputs."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dimension, with a learned scale; computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x32 * self.weight.float()).to(x.dtype)


def make_norm(norm_type: str, dim: int, eps: float, bias: bool = True) -> nn.Module:
    """`none` -> identity, `layernorm` -> LayerNorm, `rmsnorm` -> RMSNorm."""
    if norm_type == "layernorm":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    if norm_type == "rmsnorm":
        return RMSNorm(dim, eps=eps)
    if norm_type == "none":
        return nn.Identity()
    raise ValueError(f"norm_type={norm_type!r} is invalid: allowed values are 'none', 'layernorm', 'rmsnorm'")
