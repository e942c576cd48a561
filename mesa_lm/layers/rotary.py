"""Rotary position embedding (RoPE, Su et al. 2021) on (B, T, H, D) queries and keys."""

from __future__ import annotations

import torch


def rotary_cos_sin(
    position_ids: torch.Tensor, dim: int, theta: float, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (B, T, 1, dim) for integer positions (B, T); channel pairs (i, i + dim/2).

    `dtype` is float32 for float32 and half-precision models, float64 for a float64 one.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, device=position_ids.device, dtype=dtype) / dim))
    angles = position_ids.to(dtype)[..., None] * inv_freq  # (B, T, dim/2)
    angles = torch.cat([angles, angles], dim=-1)[:, :, None, :]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each channel pair of `x` (B, T, H, D) by its position's angle."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x.to(cos.dtype) * cos + rotated.to(cos.dtype) * sin).to(x.dtype)
