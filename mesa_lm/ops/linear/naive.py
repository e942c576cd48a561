"""Reference linear attention: a plain loop over time carrying the state S."""

from __future__ import annotations

import torch

from ..validation import check_linear_inputs

Tensor = torch.Tensor


def linear_attention_naive(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    gamma: Tensor | None = None,
    initial_state: Tensor | None = None,
    output_final_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """o_t = S_t q_t with S_t = gamma_t S_{t-1} + v_t k_t^T (no softmax, normaliser or scale).

    Shapes as `linear_attention`.
    """
    B, T, H, D, Dv = check_linear_inputs("linear_attention_naive", q, k, v, gamma, initial_state)
    cd = torch.promote_types(q.dtype, torch.float32)
    qc, kc, vc = q.to(cd), k.to(cd), v.to(cd)
    s = qc.new_zeros(B, H, Dv, D) if initial_state is None else initial_state.to(cd)
    outs = []
    for t in range(T):
        if gamma is not None:
            s = gamma[:, t].to(cd)[..., None, None] * s
        s = s + vc[:, t, :, :, None] * kc[:, t, :, None, :]
        outs.append((s @ qc[:, t, :, :, None]).squeeze(-1))
    o = torch.stack(outs, dim=1).to(q.dtype)
    return (o, s) if output_final_state else o
