"""Data-dependent per-head gates of the linear and mesa mixers."""

from __future__ import annotations

import torch
from torch import nn


class GateProjection(nn.Linear):
    """A per-head gate `sigmoid(W x + b)`; `bias_init` sets where it starts (initialised in `_init_weights`).

    Returned in float32 at least (float64 in a float64 model), the dtype of the recurrent states it decays.
    """

    def __init__(self, hidden_size: int, num_heads: int, bias_init: float):
        super().__init__(hidden_size, num_heads, bias=True)
        self.bias_init = bias_init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(super().forward(x).to(torch.promote_types(x.dtype, torch.float32)))
