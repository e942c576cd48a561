"""Causal softmax attention with a key/value cache, RoPE, and [P1]'s concatenated positional encoding."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..ops.softmax import softmax_attention
from .rotary import apply_rotary, rotary_cos_sin


def attention_mask_4d(key_mask: torch.Tensor | None, q_len: int, k_len: int) -> torch.Tensor | None:
    """Boolean (B, 1, q_len, k_len) mask, True where query t (the last q_len of k_len positions) may attend.

    Returns None when plain causal attention over aligned queries and keys is enough. A padded query with no
    allowed key attends causally instead (its output is ignored), so no row is empty.
    """
    if key_mask is None and q_len == k_len:
        return None
    offset = k_len - q_len
    q_pos = torch.arange(q_len, device=key_mask.device if key_mask is not None else None)[:, None] + offset
    k_pos = torch.arange(k_len, device=q_pos.device)[None, :]
    causal = (k_pos <= q_pos)[None, None]  # (1, 1, q, k)
    if key_mask is None:
        return causal
    allowed = causal & key_mask[:, None, None, :].bool()
    empty = ~allowed.any(dim=-1, keepdim=True)
    return allowed | (empty & causal)


def eager_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain matmul-softmax attention in float32 (float64 for float64 inputs): output (B, Tq, H, Dv) and weights
    (B, H, Tq, Tk).

    `allowed` is a boolean mask broadcastable to (B, H, Tq, Tk); None means causal with aligned queries and keys.
    """
    T, wide = q.shape[1], torch.promote_types(q.dtype, torch.float32)
    scores = torch.einsum("bthd,bshd->bhts", q.to(wide), k.to(wide)) * scale
    if allowed is None:
        allowed = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    return torch.einsum("bhts,bshd->bthd", weights, v.to(wide)).to(v.dtype), weights


class SoftmaxAttention(nn.Module):
    """`o_t = sum_{i<=t} softmax_i(q_t . k_i / sqrt(D)) v_i` per head.

    `config._attn_implementation` picks the kernel at every call: "sdpa" (torch's scaled_dot_product_attention, the
    default) or "eager" (plain matmul and softmax, which also returns the weights). With `num_key_value_heads` below
    `num_attention_heads`, each key/value head serves a group of query heads (grouped-query attention), and the cache
    holds only the key/value heads.
    """

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.value_head_dim = config.value_head_dim
        hidden, bias = config.hidden_size, config.use_bias
        self.q_proj = nn.Linear(hidden, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(hidden, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(hidden, self.num_kv_heads * self.value_head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.value_head_dim, hidden, bias=bias)
        self.use_rope = config.position_type == "rope"
        self.rope_theta = config.rope_theta
        # [P1]: a learned encoding concatenated to every head's queries and keys, in the first layer only.
        self.concat_positions = (
            nn.Embedding(config.max_position_embeddings, config.position_dim)
            if config.position_type == "concat" and layer_idx == 0
            else None
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor,
        layer_cache=None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`attention_mask` (B, past + T) marks real tokens (None: no padding). Returns (output, weights or None)."""
        B, T, _ = hidden_states.shape
        q = self.q_proj(hidden_states).view(B, T, self.num_heads, self.head_dim)
        k = self.k_proj(hidden_states).view(B, T, self.num_kv_heads, self.head_dim)
        v = self.v_proj(hidden_states).view(B, T, self.num_kv_heads, self.value_head_dim)
        if self.use_rope:
            cos, sin = rotary_cos_sin(
                position_ids, self.head_dim, self.rope_theta, torch.promote_types(q.dtype, torch.float32)
            )
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if self.concat_positions is not None:
            p = self.concat_positions(position_ids)[:, :, None, :].to(q.dtype)
            q = torch.cat([q, p.expand(B, T, self.num_heads, -1)], dim=-1)
            k = torch.cat([k, p.expand(B, T, self.num_kv_heads, -1)], dim=-1)
        if layer_cache is not None:
            k, v = layer_cache.append_kv(k, v)
        if self.num_kv_heads != self.num_heads:
            groups = self.num_heads // self.num_kv_heads
            k, v = k.repeat_interleave(groups, dim=2), v.repeat_interleave(groups, dim=2)
        mask = attention_mask_4d(attention_mask, T, k.shape[1])
        scale = 1.0 / math.sqrt(q.shape[-1])
        weights = None
        if output_attentions or self.config._attn_implementation == "eager":
            o, weights = eager_attention(q, k, v, mask, scale)
            weights = weights if output_attentions else None
        else:
            o = softmax_attention(q, k, v, attention_mask=mask, is_causal=mask is None, scale=scale)
        return self.o_proj(o.reshape(B, T, self.num_heads * self.value_head_dim)), weights
