"""The mesa layer's causal weight map: linear attention with the solved query x_t = (H_t + Lambda)^{-1} q_t."""

from __future__ import annotations

import torch

from ..linear.weights import gate_products
from ..validation import check_gate, check_lam, check_qkv, check_state

Tensor = torch.Tensor


def mesa_queries(
    q: Tensor,
    k: Tensor,
    lam: Tensor,
    gamma: Tensor | None = None,
    beta: Tensor | None = None,
    initial_state: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """x_t = (H_t + Lambda)^{-1} q_t for every t, H_t = gamma_t H_{t-1} + beta_t k_t k_t^T (the current token
    included, Lambda not decayed), H_0 = initial_state[0] (its symmetric part) or 0: the recurrence of
    `mesa_attention_naive`, one solve per step. Returns (B, T, H, D) in the compute dtype."""
    fn = "mesa_queries"
    B, T, H, D, _ = check_qkv(fn, q, k, k)  # k stands in for v: only q and k are needed
    check_lam(fn, lam, H, D, q.device)
    check_gate(fn, "gamma", gamma, B, T, H, q.device)
    check_gate(fn, "beta", beta, B, T, H, q.device)
    cd = torch.promote_types(q.dtype, torch.float32)
    qc, kc = q.to(cd), k.to(cd)
    reg = torch.diag_embed(lam.to(cd)[:, None].expand(H, D) if lam.ndim == 1 else lam.to(cd))  # (H, D, D)
    if initial_state is None:
        h = qc.new_zeros(B, H, D, D)
    else:
        check_state(fn, "initial_state[0] (H0)", initial_state[0], "(B, H, D, D)", (B, H, D, D), q.device)
        h0 = initial_state[0].to(cd)
        h = 0.5 * (h0 + h0.transpose(-1, -2))
    xs = []
    for t in range(T):
        kt = kc[:, t]  # (B, H, D)
        hk = kt[..., :, None] * kt[..., None, :]
        if beta is not None:
            hk = beta[:, t].to(cd)[..., None, None] * hk
        if gamma is not None:
            h = gamma[:, t].to(cd)[..., None, None] * h
        h = h + hk
        xs.append(torch.linalg.solve(h + reg, qc[:, t, :, :, None]).squeeze(-1))
    return torch.stack(xs, dim=1)


def mesa_attention_weights(
    q: Tensor,
    k: Tensor,
    lam: Tensor,
    gamma: Tensor | None = None,
    beta: Tensor | None = None,
    initial_state: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """A[b, h, t, s] = beta_s (x_t . k_s) gamma_{s+1} ... gamma_t for s <= t, 0 above the diagonal, with
    x_t = (H_t + Lambda)^{-1} q_t (`mesa_queries`).

    Shapes as `mesa_attention` (lam (H,) or (H, D)). Returns (B, H, T, T) in the compute dtype, such that
    `mesa_attention(q, k, v, lam, gamma, beta)` equals `einsum("bhts,bshd->bthd", A, v)`. With an initial state
    (H0, G0), H0 enters every x_t (the map stays exact for these keys) and G0 adds `gamma_1 ... gamma_t G0 x_t` to
    o_t, which is not a weight on any of these keys: A covers only these T tokens. O(T^2 + T D^3) work: for analysis.
    """
    with torch.autocast(q.device.type, enabled=False):  # float32 solves and products even under bf16 autocast
        x = mesa_queries(q, k, lam, gamma, beta, initial_state)
        cd = x.dtype
        scores = torch.einsum("bthd,bshd->bhts", x, k.to(cd))
        if beta is not None:
            scores = scores * beta.to(cd).transpose(1, 2)[:, :, None, :]  # beta_s scales column s
        return scores * gate_products(gamma, q.shape[1], cd, q.device)
