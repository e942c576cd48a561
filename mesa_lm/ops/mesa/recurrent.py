"""One decoding step of the mesa layer: O(D^3) per head (one D x D Cholesky), independent of the context length."""

from __future__ import annotations

import torch

from ..validation import check_mesa_inputs, check_single_step
from .solvers import WIDE_RATIO, spd_solve

Tensor = torch.Tensor


def mesa_attention_step(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lam: Tensor,
    gamma: Tensor | None = None,
    beta: Tensor | None = None,
    initial_state: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """One token of `mesa_attention`: H = gamma H_prev + beta k k^T, G = gamma G_prev + beta v k^T,
    o = G (H + Lambda)^{-1} q. Shapes as `mesa_attention` with T = 1; H_prev is used through its symmetric part.

    Returns (o (B, 1, H, Dv) in q's dtype, (H, G) in the compute dtype). Differentiable by autograd.
    """
    fn = "mesa_attention_step"
    B, T, H, D, Dv = check_mesa_inputs(fn, q, k, v, lam, gamma, beta, initial_state)
    check_single_step(fn, T)
    cd = torch.promote_types(q.dtype, torch.float32)
    qt, kt, vt = q[:, 0].to(cd), k[:, 0].to(cd), v[:, 0].to(cd)  # (B, H, *)
    kw = kt if beta is None else kt * beta[:, 0].to(cd)[..., None]
    h = kw[..., :, None] * kt[..., None, :]
    g = (vt if beta is None else vt * beta[:, 0].to(cd)[..., None])[..., :, None] * kt[..., None, :]
    if initial_state is not None:
        h0, g0 = initial_state[0].to(cd), initial_state[1].to(cd)
        h0 = 0.5 * (h0 + h0.transpose(-1, -2))
        if gamma is not None:
            decay = gamma[:, 0].to(cd)[..., None, None]
            h0, g0 = decay * h0, decay * g0
        h, g = h + h0, g + g0
    lam_c = lam.to(cd)
    reg = torch.diag_embed(lam_c[:, None].expand(H, D) if lam.ndim == 1 else lam_c)
    m = h + reg
    big = m.diagonal(dim1=-2, dim2=-1).amax() > WIDE_RATIO * reg.diagonal(dim1=-2, dim2=-1).amin()
    if cd != torch.float64 and not torch.compiler.is_compiling() and bool(big):
        # As the chunked per-position solve: once H outgrows Lambda, float32 rounding of H swamps Lambda.
        x = spd_solve(h.double() + reg.double(), qt.double()).to(cd)
    else:
        x = spd_solve(m, qt)
    o = (g @ x[..., None]).squeeze(-1)
    return o[:, None].to(q.dtype), (h, g)
