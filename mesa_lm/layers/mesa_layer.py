"""The mesa layer ([P1], gated as in [P3]): attention that solves an in-context ridge regression exactly."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.mesa.chunk import mesa_attention
from ..ops.mesa.recurrent import mesa_attention_step
from ..ops.mesa.weights import mesa_attention_weights
from .gates import GateProjection
from .norms import RMSNorm
from .padding import mask_padding, no_decay_at_padding
from .short_conv import ShortConvolution


class MesaLayer(nn.Module):
    """`o_t = G_t (H_t + Lambda)^{-1} q_t` per head, with `H_t`, `G_t` the (gated) sums of `k k^T` and `v k^T`.

    The regulariser is `Lambda = I / lambda_h` with one learned `lambda_h = exp(log_lambda)` per head ([P1]), or
    `Lambda = diag(lower_bound + softplus(lambda_theta))` per head and key channel ([P3]).

    With `output_attentions`, also returns the causal weight map A (B, H, T, T) in float32 (float64 for a float64
    model), `A[t, s] = beta_s (x_t . k_s) gamma_{s+1} ... gamma_t` with `x_t = (H_t + Lambda)^{-1} q_t`, so that
    `o = A v` before the output norm and `o_proj` (v after the short convolution); padded keys get weight 0. A covers
    the T tokens of this call: with a cache that already holds (H, G), H enters every x_t, but the past's weights on
    earlier keys cannot be recovered from G, so `o = A v + gamma_1 ... gamma_t G_past x_t`. Without a past state the
    output is computed as `A v` then (as eager softmax attention does), so gradients reach A: the same output up to
    float rounding. It costs one D x D solve per token and O(T^2) memory per head: for analysis.
    """

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.value_head_dim = config.value_head_dim
        self.qk_norm = config.mesa_qk_norm
        self.chunk_size = config.chunk_size
        # The solve of whole sequences (`mesa_attention`'s method, cg_tol, cg_max_iter); decoding steps are exact.
        self.solve = dict(method=config.mesa_solve, cg_tol=config.mesa_cg_tol, cg_max_iter=config.mesa_cg_max_iter)
        self.lambda_type = config.mesa_lambda_type
        self.lambda_init = config.mesa_lambda_init
        self.lambda_lower_bound = config.mesa_lambda_lower_bound
        hidden, bias = config.hidden_size, config.use_bias
        qk_size, v_size = self.num_heads * self.head_dim, self.num_heads * self.value_head_dim
        self.q_proj = nn.Linear(hidden, qk_size, bias=bias)
        self.k_proj = nn.Linear(hidden, qk_size, bias=bias)
        self.v_proj = nn.Linear(hidden, v_size, bias=bias)
        self.o_proj = nn.Linear(v_size, hidden, bias=bias)
        self.conv = ShortConvolution(2 * qk_size + v_size, config.mesa_conv_size) if config.mesa_conv_size else None
        if self.lambda_type == "scalar":
            self.log_lambda = nn.Parameter(torch.empty(self.num_heads))
        else:
            self.lambda_theta = nn.Parameter(torch.empty(self.num_heads, self.head_dim))
        gated = config.mesa_gate == "data"
        self.forget_gate = GateProjection(hidden, self.num_heads, bias_init=3.0) if gated else None
        self.input_gate = GateProjection(hidden, self.num_heads, bias_init=0.0) if gated else None
        self.output_norm = RMSNorm(self.value_head_dim, eps=config.norm_eps) if config.mesa_output_norm else None
        self.reset_regulariser()

    def regulariser_parameter(self) -> nn.Parameter:
        return self.log_lambda if self.lambda_type == "scalar" else self.lambda_theta

    def regulariser_parameter_init(self) -> float:
        """The start value: `lambda_h = mesa_lambda_init` (scalar) or `Lambda = mesa_lambda_init * I` (diagonal)."""
        if self.lambda_type == "scalar":
            return math.log(self.lambda_init)
        return math.log(math.expm1(self.lambda_init - self.lambda_lower_bound))  # softplus^{-1}(init - lower)

    def reset_regulariser(self) -> None:
        with torch.no_grad():
            self.regulariser_parameter().fill_(self.regulariser_parameter_init())

    def regulariser(self) -> torch.Tensor:
        """`Lambda` as the op takes it: (H,) for a scaled identity, (H, D) for a diagonal; float32 (float64 in a
        float64 model)."""
        theta = self.regulariser_parameter()
        theta = theta.to(torch.promote_types(theta.dtype, torch.float32))
        if self.lambda_type == "scalar":
            return torch.exp(-theta)
        return self.lambda_lower_bound + F.softplus(theta)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor,
        layer_cache=None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, _ = hidden_states.shape
        token_mask = attention_mask[:, -T:] if attention_mask is not None else None
        qkv = torch.cat([self.q_proj(hidden_states), self.k_proj(hidden_states), self.v_proj(hidden_states)], -1)
        if self.conv is not None:
            (qkv,) = mask_padding(token_mask, qkv)
            past = layer_cache.get("conv") if layer_cache is not None else None
            qkv, conv_state = self.conv(qkv, past)
            if layer_cache is not None:
                layer_cache.set("conv", conv_state)
        qk_size = self.num_heads * self.head_dim
        q = qkv[..., :qk_size].reshape(B, T, self.num_heads, self.head_dim)
        k = qkv[..., qk_size : 2 * qk_size].reshape(B, T, self.num_heads, self.head_dim)
        v = qkv[..., 2 * qk_size :].reshape(B, T, self.num_heads, self.value_head_dim)
        if self.qk_norm:
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        k, v = mask_padding(token_mask, k, v)
        gamma = self.forget_gate(hidden_states) if self.forget_gate is not None else None
        gamma = no_decay_at_padding(token_mask, gamma)
        beta = self.input_gate(hidden_states) if self.input_gate is not None else None
        beta = no_decay_at_padding(token_mask, beta)  # 0 * NaN: an input gate from padding must not reach H, G
        state = None
        if layer_cache is not None and layer_cache.get("H") is not None:
            state = (layer_cache.get("H"), layer_cache.get("G"))
        if T == 1:  # decoding: one recurrent step, O(D^3) per head whatever the context length
            o, (H, G) = mesa_attention_step(q, k, v, self.regulariser(), gamma=gamma, beta=beta, initial_state=state)
        else:
            o, (H, G) = mesa_attention(
                q,
                k,
                v,
                self.regulariser(),
                gamma=gamma,
                beta=beta,
                initial_state=state,
                output_final_state=True,
                chunk_size=self.chunk_size,
                **self.solve,
            )
        if layer_cache is not None:
            layer_cache.set("H", H)
            layer_cache.set("G", G)
        weights = None
        if output_attentions:
            weights = mesa_attention_weights(q, k, self.regulariser(), gamma=gamma, beta=beta, initial_state=state)
            if state is None:  # o = A v exactly: the map is on the output's path, so it has a gradient
                o = torch.einsum("bhts,bshd->bthd", weights, v.to(weights.dtype)).to(o.dtype)
        if self.output_norm is not None:
            o = self.output_norm(o)
        return self.o_proj(o.reshape(B, T, self.num_heads * self.value_head_dim)), weights
