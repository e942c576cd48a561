"""Causal linear self-attention ([P1]), with optional feature map, L2-normalised q/k and a data-dependent gate."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.linear.chunk import linear_attention
from ..ops.linear.recurrent import linear_attention_step
from ..ops.linear.weights import linear_attention_weights
from .feature_maps import apply_feature_map, feature_dim
from .gates import GateProjection
from .padding import mask_padding, no_decay_at_padding


class LinearAttention(nn.Module):
    """`S_t = gamma_t S_{t-1} + v_t phi(k_t)^T`, `o_t = S_t phi(q_t)` per head (no softmax, no normaliser).

    With `output_attentions`, also returns the causal weight map A (B, H, T, T) in float32 (float64 for a float64
    model), `A[t, s] = phi(q_t) . phi(k_s) gamma_{s+1} ... gamma_t`, so that `o = A v` before `o_proj`; padded keys
    get weight 0. A covers the T tokens of this call: with a cache that already holds a state (decoding, chunked
    prefill), the past enters through that state, and its weights on the earlier keys cannot be recovered from it,
    so `o = A v + gamma_1 ... gamma_t S_past phi(q_t)`.
    """

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.value_head_dim = config.value_head_dim
        self.feature_map = config.linear_feature_map
        self.dpfp_nu = config.linear_dpfp_nu
        self.qk_norm = config.linear_qk_norm
        self.chunk_size = config.chunk_size
        self.feature_dim = feature_dim(self.feature_map, self.head_dim, self.dpfp_nu)
        hidden, bias = config.hidden_size, config.use_bias
        self.q_proj = nn.Linear(hidden, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(hidden, self.num_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(hidden, self.num_heads * self.value_head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.value_head_dim, hidden, bias=bias)
        self.forget_gate = GateProjection(hidden, self.num_heads, bias_init=3.0) if config.linear_gate else None

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor,
        layer_cache=None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, _ = hidden_states.shape
        q = self.q_proj(hidden_states).view(B, T, self.num_heads, self.head_dim)
        k = self.k_proj(hidden_states).view(B, T, self.num_heads, self.head_dim)
        v = self.v_proj(hidden_states).view(B, T, self.num_heads, self.value_head_dim)
        q = apply_feature_map(q, self.feature_map, self.dpfp_nu)
        k = apply_feature_map(k, self.feature_map, self.dpfp_nu)
        if self.qk_norm:
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        token_mask = attention_mask[:, -T:] if attention_mask is not None else None
        k, v = mask_padding(token_mask, k, v)
        gamma = self.forget_gate(hidden_states) if self.forget_gate is not None else None
        gamma = no_decay_at_padding(token_mask, gamma)
        state = layer_cache.get("S") if layer_cache is not None else None
        if T == 1:  # decoding: one recurrent step, O(Dv D) per head whatever the context length
            o, state = linear_attention_step(q, k, v, gamma=gamma, initial_state=state)
        else:
            o, state = linear_attention(
                q, k, v, gamma=gamma, initial_state=state, output_final_state=True, chunk_size=self.chunk_size
            )
        if layer_cache is not None:
            layer_cache.set("S", state)
        weights = linear_attention_weights(q, k, gamma) if output_attentions else None
        return self.o_proj(o.reshape(B, T, self.num_heads * self.value_head_dim)), weights
