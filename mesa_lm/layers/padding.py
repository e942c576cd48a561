"""Keeping left padding out of recurrent states."""

from __future__ import annotations

import torch


def mask_padding(token_mask: torch.Tensor | None, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Zero `tensors` (B, T, ...) at padded positions, so padding adds nothing to a recurrent state.

    By selection, not multiplication: 0 * NaN is NaN, and a non-finite value in padding must not reach real tokens."""
    if token_mask is None:
        return list(tensors)
    keep = token_mask.bool()
    return [torch.where(keep.view(*keep.shape, *([1] * (t.dim() - 2))), t, 0.0) for t in tensors]


def no_decay_at_padding(token_mask: torch.Tensor | None, gamma: torch.Tensor | None) -> torch.Tensor | None:
    """Set a gate (B, T, H) to 1 at padded positions: a forget gate then does not decay a state there, and an input
    gate computed from padding (possibly non-finite) scales only the zero keys and values of padding."""
    if token_mask is None or gamma is None:
        return gamma
    return torch.where(token_mask[..., None].bool(), gamma, torch.ones_like(gamma))
