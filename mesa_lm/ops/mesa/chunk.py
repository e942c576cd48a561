"""Chunked mesa layer ("solve, then attend"): per chunk, materialise H_t for the chunk's positions,
solve (H_t + Lambda) x_t = q_t by Cholesky, then read out o_t = G_t x_t as linear attention over x."""

from __future__ import annotations

import torch

from ..linear.chunk import chunk_decay, log_gates
from ..validation import check_chunk_size, check_mesa_inputs

Tensor = torch.Tensor


def mesa_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lam: Tensor,
    gamma: Tensor | None = None,
    beta: Tensor | None = None,
    initial_state: tuple[Tensor, Tensor] | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """o_t = G_t (H_t + Lambda)^{-1} q_t, with
    H_t = gamma_t H_{t-1} + beta_t k_t k_t^T and G_t = gamma_t G_{t-1} + beta_t v_t k_t^T (Lambda is not decayed).

    q, k: (B, T, H, D); v: (B, T, H, Dv); lam: (H,) for Lambda = lam[h] I or (H, D) for diag(lam[h]), > 0;
    gamma, beta: (B, T, H) in (0, 1] or None (= 1); initial_state: (H0 (B, H, D, D), G0 (B, H, Dv, D)) or None,
    H0 used through its symmetric part (H0 + H0^T) / 2. Returns o (B, T, H, Dv) in q's dtype, plus
    (H_T, G_T) in the compute dtype (float32, or float64 for float64 inputs) if output_final_state.
    Memory: one (B, H, chunk_size, D, D) tensor per chunk, kept for autograd.
    """
    fn = "mesa_attention"
    B, T, H, D, Dv = check_mesa_inputs(fn, q, k, v, lam, gamma, beta, initial_state)
    check_chunk_size(fn, chunk_size)
    cd = torch.promote_types(q.dtype, torch.float32)
    qh, kh, vh = (x.to(cd).transpose(1, 2) for x in (q, k, v))  # (B, H, T, *)
    lg = log_gates(gamma, B, T, H, qh)
    # beta scales each token's contribution to both H and G, so fold it into the written keys/values.
    kw, vw = kh, vh
    if beta is not None:
        b = beta.to(cd).transpose(1, 2)[..., None]
        kw, vw = b * kh, b * vh
    lam_diag = lam.to(cd)[:, None].expand(H, D) if lam.ndim == 1 else lam.to(cd)
    reg = torch.diag_embed(lam_diag)[:, None]  # (H, 1, D, D): broadcasts over (B, H, C, D, D)
    if initial_state is None:
        h = qh.new_zeros(B, H, D, D)
        g = qh.new_zeros(B, H, Dv, D)
    else:
        h0 = initial_state[0].to(cd)
        # Cholesky reads one triangle only; symmetrising makes the op (and its gradient) well defined.
        h = 0.5 * (h0 + h0.transpose(-1, -2))
        g = initial_state[1].to(cd)
    outs = []
    for start in range(0, T, chunk_size):
        sl = slice(start, start + chunk_size)
        qc, kc, kwc, vwc = qh[:, :, sl], kh[:, :, sl], kw[:, :, sl], vw[:, :, sl]
        a, dec = chunk_decay(lg[:, :, sl])  # (B, H, C), (B, H, C, C)
        hs = a[..., None, None] * h[:, :, None] + torch.einsum("bhti,bhid,bhie->bhtde", dec, kwc, kc)
        # cholesky_ex: no host sync on error checking; H_t + Lambda is PD whenever H0 is PSD and Lambda > 0.
        chol = torch.linalg.cholesky_ex(hs + reg)[0]
        x = torch.cholesky_solve(qc.unsqueeze(-1), chol).squeeze(-1)  # (B, H, C, D)
        inter = a[..., None] * (x @ g.transpose(-1, -2))
        intra = ((x @ kc.transpose(-1, -2)) * dec) @ vwc
        outs.append(inter + intra)
        h = hs[:, :, -1]
        g = a[..., -1, None, None] * g + (vwc * dec[..., -1, :, None]).transpose(-1, -2) @ kc
    o = torch.cat(outs, dim=2).transpose(1, 2).to(q.dtype)
    return (o, (h, g)) if output_final_state else o
