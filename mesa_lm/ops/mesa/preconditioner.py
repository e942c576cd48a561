"""Exact solves with a nearby matrix of the gated mesa layer: a preconditioner for its conjugate gradient.

Within a chunk, with a_t the decay from the chunk start H_n to position t and dec[t, i] = a_t / a_i,
    M_t = a_t H_n + Lambda + sum_{i<=t} dec[t, i] beta_i k_i k_i^T.
Lambda is not decayed, so M_t has no factorisation shared across t. Decaying it too, from the reference decay
abar = sqrt(a_first a_last) of the chunk, gives
    P_t = (a_t / abar) (abar H_n + Lambda + sum_{i<=t} (abar beta_i / a_i) k_i k_i^T) = M_t - s_t Lambda,
    s_t = 1 - a_t / abar,
and (abar H_n + Lambda) + U_t^T U_t is one base plus a nested rank-t update, which the ungated layer's Woodbury solve
answers for every t from one D x D and one C x C Cholesky factor. Since P_t >= (a_t / abar) Lambda, the eigenvalues
of P_t^{-1} M_t lie between 1 and abar / a_t, whatever H_n and the keys: the condition number is at most
sqrt(a_first / a_last). abar / a_i <= sqrt(a_first / a_last) keeps the scaled keys bounded.
"""

from __future__ import annotations

import torch

from ..chunking import Decay
from .triangular import lower_inverse

Tensor = torch.Tensor


class DecayedRegulariserSolve:
    """x_t = P_t^{-1} b_t for every position of a group of chunks (see the module docstring).

    h: (G, B, H, D, D) states at the chunks' starts; k: (G, B, H, C, D); beta: (G, B, H, C) or None;
    lam: (H, D); decay: the group's decays (a None for an ungated op, where P_t = M_t).
    """

    def __init__(self, h: Tensor, k: Tensor, beta: Tensor | None, lam: Tensor, decay: Decay):
        G, B, H, C, D = k.shape
        a = k.new_ones(G, B, H, C) if decay.a is None else decay.a
        abar = (a[..., 0] * a[..., -1]).sqrt()  # (G, B, H)
        li = lower_inverse(abar[..., None, None] * h + torch.diag_embed(lam))  # R = (abar H_n + Lambda)^{-1} = li^T li
        coef = abar[..., None] / a if beta is None else abar[..., None] * beta / a  # abar beta_i / a_i
        w = li @ (coef.sqrt()[..., None] * k).transpose(-1, -2)  # (G, B, H, D, C): li U^T
        gram = w.transpose(-1, -2) @ w  # U R U^T
        gram.diagonal(dim1=-2, dim2=-1).add_(1.0)
        # k^T R k of the scaled keys: how far they reach beyond the base (Woodbury's float32 accuracy falls beyond 3).
        self.reach = gram.diagonal(dim1=-2, dim2=-1).amax(-1) - 1.0  # (G, B, H)
        self.lai = lower_inverse(gram)  # A = I + U R U^T = L_A L_A^T
        # [R; U R] in one (D + C, D) matrix: one product gives both R b and U R b.
        self.ru = torch.cat([li.transpose(-1, -2) @ li, w.transpose(-1, -2) @ li], dim=-2)
        self.rut = li.transpose(-1, -2) @ w  # R U^T, (D, C)
        self.scale = (abar[..., None] / a)[..., None]  # (G, B, H, C, 1): P_t^{-1} = (abar / a_t) (...)^{-1}
        self.shift = (1.0 - a / abar[..., None])[..., None]  # (G, B, H, C, 1): M_t - P_t = shift_t Lambda
        self.D = D

    def __call__(self, b: Tensor) -> Tensor:
        """P_t^{-1} b_t; b: (G, B, H, C, D). The leading blocks of L_A's inverse invert A's leading blocks, so
        column t of triu(L_A^{-1} U R B^T) is L_t^{-1} U_t R b_t: one C x C factor serves every position."""
        both = self.ru @ b.transpose(-1, -2)  # (D + C, C): columns R b_t over U R b_t
        rb, urb = both[..., : self.D, :], both[..., self.D :, :]
        y = (self.lai @ urb).triu_()  # column t: L_t^{-1} U_t R b_t, zero below row t
        z = self.lai.transpose(-1, -2) @ y  # column t: A_t^{-1} U_t R b_t
        x = rb.sub_(self.rut @ z).transpose(-1, -2)  # rows: R b_t - R U_t^T z_t
        return x * self.scale
