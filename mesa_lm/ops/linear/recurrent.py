"""One decoding step of linear attention: O(Dv D) per head, independent of the context length."""

from __future__ import annotations

import torch

from ..validation import check_linear_inputs, check_single_step

Tensor = torch.Tensor


def linear_attention_step(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    gamma: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One token: S = gamma S_prev + v k^T, o = S q. Shapes as `linear_attention` with T = 1.

    Returns (o (B, 1, H, Dv) in q's dtype, S (B, H, Dv, D) in the compute dtype). Differentiable by autograd.
    """
    fn = "linear_attention_step"
    B, T, H, D, Dv = check_linear_inputs(fn, q, k, v, gamma, initial_state)
    check_single_step(fn, T)
    cd = torch.promote_types(q.dtype, torch.float32)
    qt, kt, vt = q[:, 0].to(cd), k[:, 0].to(cd), v[:, 0].to(cd)  # (B, H, *)
    s = vt[..., :, None] * kt[..., None, :]
    if initial_state is not None:
        prev = initial_state.to(cd)
        s = s + (prev if gamma is None else gamma[:, 0].to(cd)[..., None, None] * prev)
    o = (s @ qt[..., None]).squeeze(-1)
    return o[:, None].to(q.dtype), s
