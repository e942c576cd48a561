"""Rotary position embedding (RoPE, Su et al. 2021) on (B, T, H, D) queries and keys, with transformers' scalings."""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update


def rotary_dim(config) -> int:
    """How many channels of each head rotate: `head_dim * partial_rotary_factor`, rounded down to even."""
    factor = config.rope_parameters.get("partial_rotary_factor", 1.0)
    return int(config.head_dim * factor) // 2 * 2


class RotaryEmbedding(nn.Module):
    """cos and sin of each position for `config.rope_parameters` (rope_type "default", or a scaling of transformers'
    `ROPE_INIT_FUNCTIONS`: linear, dynamic, yarn, longrope, llama3), on the first `rotary_dim(config)` channels."""

    def __init__(self, config, device: torch.device | str | None = None):
        super().__init__()
        self.config = config
        self.max_seq_len_cached = self.original_max_seq_len = config.max_position_embeddings
        self.rope_type = config.rope_parameters["rope_type"]
        inv_freq, self.attention_scaling = self.compute_inv_freq(device)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("original_inv_freq", inv_freq.clone(), persistent=False)

    def compute_inv_freq(self, device: torch.device | str | None = None) -> tuple[torch.Tensor, float]:
        """The inverse frequencies and the cos/sin scaling of this module's rope type (also after meta-device init)."""
        if self.rope_type == "default":
            return self.compute_default_rope_parameters(self.config, device)
        return ROPE_INIT_FUNCTIONS[self.rope_type](self.config, device)

    @staticmethod
    def compute_default_rope_parameters(config, device=None, seq_len=None, **kwargs) -> tuple[torch.Tensor, float]:
        """Unscaled RoPE: inverse frequencies theta^(-2i/d) over the rotated channels, and no output scaling."""
        dim = rotary_dim(config)
        exponents = torch.arange(0, dim, 2, dtype=torch.int64).to(device=device, dtype=torch.float) / dim
        return 1.0 / (config.rope_parameters["rope_theta"] ** exponents), 1.0

    @dynamic_rope_update  # recomputes inv_freq for the "dynamic" scaling when a sequence outgrows the table
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin (B, T, rotary_dim) in float32 (float64 for a float64 x), for integer positions (B, T)."""
        wide = torch.promote_types(x.dtype, torch.float32)
        angles = position_ids[..., None].to(wide) * self.inv_freq.to(device=x.device, dtype=wide)
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos() * self.attention_scaling, angles.sin() * self.attention_scaling


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first `cos.shape[-1]` channels of each head of `x` (B, T, H, D) in pairs (i, i + half); cos and sin
    are (B, T, rotary_dim). The other channels pass unchanged (partial rotation)."""
    dim = cos.shape[-1]
    rot, rest = x[..., :dim].to(cos.dtype), x[..., dim:]
    half = dim // 2
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    rotated = rot * cos + torch.cat([-rot[..., half:], rot[..., :half]], dim=-1) * sin
    return torch.cat([rotated.to(x.dtype), rest], dim=-1)
