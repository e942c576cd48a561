"""Linear attention's causal weight map: the (T, T) matrix A with o_t = sum_{s<=t} A[t, s] v_s, for analysis."""

from __future__ import annotations

import torch

from ..validation import check_gate, check_qkv

Tensor = torch.Tensor


def gate_products(gamma: Tensor | None, T: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Causal decays: [..., t, s] = gamma_{s+1} ... gamma_t for s <= t (1 on the diagonal), 0 for s > t.

    gamma: (B, T, H) or None (no gate: the causal mask of ones, (T, T)). Returns (B, H, T, T) in `dtype`.
    Each entry is a sum of the logs between s and t (not a difference of cumulative sums, which cancels), so a
    gate of exactly 0 gives weight 0 to every earlier key and never NaN.
    """
    causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()
    if gamma is None:
        return causal.to(dtype)
    log_gamma = gamma.to(dtype).log().transpose(1, 2)  # (B, H, T)
    between = log_gamma[..., :, None].expand(*log_gamma.shape, T)  # [t, s] = log gamma_t
    between = between.masked_fill(~causal.tril(-1), 0.0).cumsum(-2)  # [t, s] = sum_{s < r <= t} log gamma_r
    return between.exp().masked_fill(~causal, 0.0)


def linear_attention_weights(q: Tensor, k: Tensor, gamma: Tensor | None = None) -> Tensor:
    """A[b, h, t, s] = (q_t . k_s) gamma_{s+1} ... gamma_t for s <= t, 0 above the diagonal.

    q, k: (B, T, H, D) (after any feature map and normalisation, as `linear_attention` takes them); gamma: (B, T, H)
    in (0, 1] or None. Returns (B, H, T, T) in the compute dtype (float32, or float64 for float64 inputs), such that
    `linear_attention(q, k, v, gamma)` equals `einsum("bhts,bshd->bthd", A, v)`. An initial state S_0 adds
    `gamma_1 ... gamma_t S_0 q_t` to o_t, which is not a weight on any of these keys: A covers only these T tokens.
    O(T^2) memory per head: for analysis, not for training.
    """
    fn = "linear_attention_weights"
    B, T, H, _, _ = check_qkv(fn, q, k, k)  # k stands in for v: only q and k are needed
    check_gate(fn, "gamma", gamma, B, T, H, q.device)
    cd = torch.promote_types(q.dtype, torch.float32)
    with torch.autocast(q.device.type, enabled=False):  # float32 products even under bf16 autocast, as the ops
        scores = torch.einsum("bthd,bshd->bhts", q.to(cd), k.to(cd))
        return scores * gate_products(gamma, T, cd, q.device)
