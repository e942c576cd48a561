"""A causal depthwise short convolution whose last inputs can be carried in a cache."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ShortConvolution(nn.Module):
    """Depthwise causal conv1d of width `kernel_size` over (B, T, C), followed by SiLU ([P3])."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=False)

    def forward(self, x: torch.Tensor, past: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the output (B, T, C) and the last `kernel_size - 1` inputs (B, kernel_size - 1, C) for the cache.

        `past` holds the inputs before `x` (zeros at the start of a sequence).
        """
        if past is None:
            past = x.new_zeros(x.shape[0], self.kernel_size - 1, x.shape[2])
        full = torch.cat([past.to(x.dtype), x], dim=1)
        out = self.conv(full.transpose(1, 2)).transpose(1, 2)
        return F.silu(out), full[:, -(self.kernel_size - 1) :]
