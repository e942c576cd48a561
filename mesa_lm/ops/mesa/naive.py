"""Reference mesa layer: a plain loop over time carrying H and G, one linear solve per step."""

from __future__ import annotations

import torch

from ..validation import check_mesa_inputs

Tensor = torch.Tensor


def mesa_attention_naive(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lam: Tensor,
    gamma: Tensor | None = None,
    beta: Tensor | None = None,
    initial_state: tuple[Tensor, Tensor] | None = None,
    output_final_state: bool = False,
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """o_t = G_t (H_t + Lambda)^{-1} q_t,
    H_t = gamma_t H_{t-1} + beta_t k_t k_t^T, G_t = gamma_t G_{t-1} + beta_t v_t k_t^T.

    Shapes as `mesa_attention`; H0 is used through its symmetric part (H0 + H0^T) / 2.
    """
    B, T, H, D, Dv = check_mesa_inputs("mesa_attention_naive", q, k, v, lam, gamma, beta, initial_state)
    cd = torch.promote_types(q.dtype, torch.float32)
    qc, kc, vc = q.to(cd), k.to(cd), v.to(cd)
    lam_diag = lam.to(cd)[:, None].expand(H, D) if lam.ndim == 1 else lam.to(cd)
    reg = torch.diag_embed(lam_diag)  # (H, D, D)
    if initial_state is None:
        h = qc.new_zeros(B, H, D, D)
        g = qc.new_zeros(B, H, Dv, D)
    else:
        h0 = initial_state[0].to(cd)
        h = 0.5 * (h0 + h0.transpose(-1, -2))
        g = initial_state[1].to(cd)
    outs = []
    for t in range(T):
        kt, vt = kc[:, t], vc[:, t]  # (B, H, D), (B, H, Dv)
        hk, gk = kt[..., :, None] * kt[..., None, :], vt[..., :, None] * kt[..., None, :]
        if beta is not None:
            b = beta[:, t].to(cd)[..., None, None]
            hk, gk = b * hk, b * gk
        if gamma is not None:
            a = gamma[:, t].to(cd)[..., None, None]
            h, g = a * h, a * g
        h, g = h + hk, g + gk
        x = torch.linalg.solve(h + reg, qc[:, t, :, :, None])  # (B, H, D, 1)
        outs.append((g @ x).squeeze(-1))
    o = torch.stack(outs, dim=1).to(q.dtype)
    return (o, (h, g)) if output_final_state else o
