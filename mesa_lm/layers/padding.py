"""Keeping left padding out of recurrent states."""

from __future__ import annotations

import torch


def mask_padding(token_mask: torch.Tensor | None, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Zero `tensors` (B, T, ...) at padded positions, so padding adds nothing to a recurrent state."""
    if token_mask is None:
        return list(tensors)
    return [t * token_mask.view(*token_mask.shape, *([1] * (t.dim() - 2))).to(t.dtype) for t in tensors]


def no_decay_at_padding(token_mask: torch.Tensor | None, gamma: torch.Tensor | None) -> torch.Tensor | None:
    """Set a forget gate (B, T, H) to 1 at padded positions, so padding does not decay a state."""
    if token_mask is None or gamma is None:
        return gamma
    return torch.where(token_mask[..., None].bool(), gamma, torch.ones_like(gamma))
