"""Position-wise MLPs of a block: GPT-2's GELU MLP and the SwiGLU of Llama and [P3]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GeluMLP(nn.Module):
    """`W_2 GELU(W_1 x)` (GPT-2)."""

    def __init__(self, hidden_size: int, intermediate_size: int, bias: bool):
        super().__init__()
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.up_proj(x)))


class SwiGLUMLP(nn.Module):
    """`W_down (SiLU(W_gate x) * W_up x)`."""

    def __init__(self, hidden_size: int, intermediate_size: int, bias: bool):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def make_mlp(mlp_type: str, hidden_size: int, intermediate_size: int, bias: bool) -> nn.Module | None:
    """The block's MLP, or None for attention-only blocks."""
    if mlp_type == "gelu":
        return GeluMLP(hidden_size, intermediate_size, bias)
    if mlp_type == "swiglu":
        return SwiGLUMLP(hidden_size, intermediate_size, bias)
    if mlp_type == "none":
        return None
    raise ValueError(f"mlp_type={mlp_type!r} is invalid: allowed values are 'none', 'gelu', 'swiglu'")
