"""Chunkwise linear attention: carry the state across chunk boundaries, masked products within a chunk."""

from __future__ import annotations

import torch

from ..validation import check_chunk_size, check_linear_inputs

Tensor = torch.Tensor


def chunk_decay(log_gamma: Tensor) -> tuple[Tensor, Tensor]:
    """From log-gates (..., C) of one chunk: A_t = prod_{s<=t} gamma_s (..., C) and
    d[t, i] = prod_{s=i+1..t} gamma_s for i <= t, 0 for i > t (..., C, C)."""
    n = log_gamma.shape[-1]
    cum = log_gamma.cumsum(-1)
    causal = torch.ones(n, n, dtype=torch.bool, device=log_gamma.device).tril()
    # Mask before exp: for i > t the difference is positive and could overflow to inf (inf * 0 = nan).
    diff = torch.where(causal, cum[..., :, None] - cum[..., None, :], float("-inf"))
    return cum.exp(), diff.exp()


def log_gates(gamma: Tensor | None, B: int, T: int, H: int, ref: Tensor) -> Tensor:
    """log gamma as (B, H, T) in ref's dtype; zeros (gamma = 1) when there is no gate."""
    if gamma is None:
        return ref.new_zeros(B, H, T)
    return gamma.to(ref.dtype).log().transpose(1, 2)


def linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    gamma: Tensor | None = None,
    initial_state: Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> Tensor | tuple[Tensor, Tensor]:
    """o_t = S_t q_t with S_t = gamma_t S_{t-1} + v_t k_t^T, S_0 = initial_state or 0 (no softmax, normaliser or scale).

    q, k: (B, T, H, D); v: (B, T, H, Dv); gamma: (B, T, H) in (0, 1] or None; initial_state: (B, H, Dv, D).
    Returns o (B, T, H, Dv) in q's dtype, plus S_T in the compute dtype if output_final_state.
    """
    fn = "linear_attention"
    B, T, H, D, Dv = check_linear_inputs(fn, q, k, v, gamma, initial_state)
    check_chunk_size(fn, chunk_size)
    cd = torch.promote_types(q.dtype, torch.float32)
    qh, kh, vh = (x.to(cd).transpose(1, 2) for x in (q, k, v))  # (B, H, T, *)
    lg = log_gates(gamma, B, T, H, qh)
    s = qh.new_zeros(B, H, Dv, D) if initial_state is None else initial_state.to(cd)
    outs = []
    for start in range(0, T, chunk_size):
        sl = slice(start, start + chunk_size)
        qc, kc, vc = qh[:, :, sl], kh[:, :, sl], vh[:, :, sl]
        a, dec = chunk_decay(lg[:, :, sl])
        inter = a[..., None] * (qc @ s.transpose(-1, -2))
        intra = ((qc @ kc.transpose(-1, -2)) * dec) @ vc
        outs.append(inter + intra)
        s = a[..., -1, None, None] * s + (vc * dec[..., -1, :, None]).transpose(-1, -2) @ kc
    o = torch.cat(outs, dim=2).transpose(1, 2).to(q.dtype)
    return (o, s) if output_final_state else o
