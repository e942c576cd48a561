"""[P2]'s one-layer linear attention with merged complex weights, and full-batch gradient descent on it.

    yhat_t = W_PV E_t E_t^H W_KQ e_t / (t - 1) = W_PV S_t W_KQ e_t / (t - 1),   S_t = sum_{i<=t} e_i e_i^H,
    L(W_KQ, W_PV) = (1/m) sum_sequences 1/2 sum_{t=2}^{T-1} |yhat_t - x_{t+1}|^2.

With `r_t = yhat_t - x_{t+1}` and `M_t = S_t W_KQ e_t / (t-1)` the gradients are closed-form (S_t is Hermitian):

    grad_{W_PV} = (1/m) sum r_t M_t^H,     grad_{W_KQ} = (1/m) sum S_t W_PV^H r_t e_t^H / (t-1),

in PyTorch's convention for complex parameters, `grad = dL/dRe + i dL/dIm`: so `W <- W - lr * grad` is plain gradient
descent on the real and imaginary parts (a discretised gradient flow on C = R^2), and a test checks it against autograd.

Several initialisations train at once on the same data: weights carry a leading dimension K (W_KQ (K, 2d, 2d),
W_PV (K, d, 2d)), and each S_t is read once for all K, which is what dominates the cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .process import tokens

Tensor = torch.Tensor


@dataclass
class Context:
    """Parameter-free statistics of m sequences at positions t = first .. n (the tokens e_1 .. e_n are seen).

    e (m, n', 2d): e_t; s (m, n', 2d, 2d): S_t; y (m, n', d): the targets x_{t+1}; inv (n',): 1 / (t - 1).
    """

    e: Tensor
    s: Tensor
    y: Tensor
    inv: Tensor

    @property
    def m(self) -> int:
        return self.e.shape[0]


def context(x: Tensor, first: int = 2) -> Context:
    """Statistics of sequences `x_1 .. x_L` (m, L, d) at positions `t = first .. L-1` (each has a target x_{t+1})."""
    if not 2 <= first <= x.shape[1] - 1:
        raise ValueError(f"positions start at t = first >= 2 and need a target, got first={first}, L={x.shape[1]}")
    e = tokens(x[:, :-1])
    before = e[:, : first - 1]
    s = torch.einsum("mia,mib->mab", before, before.conj()).unsqueeze(1)
    outer = e[:, first - 1 :].unsqueeze(-1) * e[:, first - 1 :].conj().unsqueeze(-2)
    s = outer.cumsum_(1).add_(s)
    t = torch.arange(first, x.shape[1], dtype=torch.float64, device=x.device)
    return Context(e=e[:, first - 1 :], s=s, y=x[:, first:], inv=1.0 / (t - 1))


def init_weights(d: int, inits: list[tuple[float, float]]) -> tuple[Tensor, Tensor]:
    """[P2]'s diagonal start: W_KQ = a_0 I in its lower-left block (rows d:2d, cols 0:d), W_PV = [b_0 I, 0]."""
    w_kq = torch.zeros(len(inits), 2 * d, 2 * d, dtype=torch.complex128)
    w_pv = torch.zeros(len(inits), d, 2 * d, dtype=torch.complex128)
    eye = torch.eye(d, dtype=torch.complex128)
    for k, (a0, b0) in enumerate(inits):
        w_kq[k, d:, :d] = a0 * eye
        w_pv[k, :, :d] = b0 * eye
    return w_kq, w_pv


def _flat(ctx: Context) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Sequences and positions merged into one axis of length m n': e, S, y and 1/(t-1) as a column."""
    m, n, dim = ctx.e.shape
    inv = ctx.inv.repeat(m)[:, None]
    return ctx.e.reshape(m * n, dim), ctx.s.reshape(m * n, dim, dim), ctx.y.reshape(m * n, -1), inv


def _apply_s(s: Tensor, v: Tensor) -> Tensor:
    """S_t v_t for every position and initialisation: s (N, 2d, 2d), v (K, N, 2d) -> (K, N, 2d); S is read once."""
    return (s @ v.permute(1, 2, 0)).permute(2, 0, 1)


def forward(w_kq: Tensor, w_pv: Tensor, ctx: Context) -> tuple[Tensor, Tensor]:
    """Predictions `yhat_t` (K, m n', d) and attention outputs `M_t` (K, m n', 2d), positions flattened."""
    e, s, _, inv = _flat(ctx)
    mem = _apply_s(s, e @ w_kq.transpose(-1, -2)) * inv
    return mem @ w_pv.transpose(-1, -2), mem


def loss(w_kq: Tensor, w_pv: Tensor, ctx: Context) -> Tensor:
    """The training loss per initialisation (K,); differentiable, the reference for `loss_and_grad`."""
    yhat, _ = forward(w_kq, w_pv, ctx)
    return 0.5 * (yhat - _flat(ctx)[2]).abs().square().sum((1, 2)) / ctx.m


def loss_and_grad(w_kq: Tensor, w_pv: Tensor, ctx: Context) -> tuple[Tensor, Tensor, Tensor]:
    """Loss (K,) and the closed-form gradients with respect to W_KQ and W_PV (module docstring)."""
    e, s, y, inv = _flat(ctx)
    yhat, mem = forward(w_kq, w_pv, ctx)
    r = yhat - y
    value = 0.5 * r.abs().square().sum((1, 2)) / ctx.m
    back = _apply_s(s, (r @ w_pv.conj()) * inv)  # rows of S_t W_PV^H r_t / (t-1)
    grad_pv = r.transpose(-1, -2) @ mem.conj() / ctx.m
    grad_kq = back.transpose(-1, -2) @ e.conj() / ctx.m
    return value, grad_kq, grad_pv


def ab(w_kq: Tensor, w_pv: Tensor) -> Tensor:
    """[P2]'s tracked product `mean_j Re W_KQ[d+j, j] * Re W_PV[j, j]` (K,): the step size of the implemented GD."""
    d = w_pv.shape[-2]
    return (w_kq[:, d:, :d].real.diagonal(dim1=-2, dim2=-1) * w_pv[:, :, :d].real.diagonal(dim1=-2, dim2=-1)).mean(-1)


def off_structure_norm(w_kq: Tensor, w_pv: Tensor) -> Tensor:
    """Frobenius norm (K,) of every entry outside the diagonals of W_KQ[d:, :d] and W_PV[:, :d]."""
    d = w_pv.shape[-2]
    kq, pv = w_kq.clone(), w_pv.clone()
    kq[:, d:, :d] -= torch.diag_embed(kq[:, d:, :d].diagonal(dim1=-2, dim2=-1))
    pv[:, :, :d] -= torch.diag_embed(pv[:, :, :d].diagonal(dim1=-2, dim2=-1))
    return (kq.abs().square().sum((-2, -1)) + pv.abs().square().sum((-2, -1))).sqrt()


def test_metrics(w_kq: Tensor, w_pv: Tensor, ctx: Context) -> dict[str, Tensor]:
    """At the context's positions (the last one, t = T, in the experiments), per initialisation (K,):

    test_error = sum |yhat_t - x_{t+1}|^2 / sum |x_{t+1}|^2   (the zero predictor scores 1),
    ratio      = mean over sequences of Re <x_{t+1}, yhat_t> / |x_{t+1}|^2   (the prediction ratio; 1 = recovery).

    The ratio is the projection of the prediction on the target, which equals `Re(yhat / x)` coordinate-wise when the
    prediction is a multiple of the target and stays defined where a coordinate of x is 0 (the sparse start).
    """
    yhat, _ = forward(w_kq, w_pv, ctx)
    y = _flat(ctx)[2]
    norm2 = y.abs().square().sum(-1)
    error = (yhat - y).abs().square().sum(-1).sum(-1) / norm2.sum()
    ratio = ((y.conj() * yhat).real.sum(-1) / norm2).mean(-1)
    return {"test_error": error, "ratio": ratio}


def train(
    w_kq: Tensor, w_pv: Tensor, train_ctx: Context, test_ctx: Context, lr: float, steps: int
) -> tuple[Tensor, Tensor, dict[str, list[list[float]]]]:
    """Full-batch gradient descent `W <- W - lr * grad`, no momentum; returns the final weights and the history.

    The history holds, for steps 0 .. steps (index = number of updates done), one list of K values per metric:
    loss, ab, off (off_structure_norm), test_error, ratio. A run whose loss is not finite stops there.
    """
    history: dict[str, list[list[float]]] = {k: [] for k in ("loss", "ab", "off", "test_error", "ratio")}
    for step in range(steps + 1):
        value, grad_kq, grad_pv = loss_and_grad(w_kq, w_pv, train_ctx)
        metrics = {"loss": value, "ab": ab(w_kq, w_pv), "off": off_structure_norm(w_kq, w_pv)}
        metrics.update(test_metrics(w_kq, w_pv, test_ctx))
        for key, v in metrics.items():
            history[key].append(v.tolist())
        if step == steps or not torch.isfinite(value).all():
            break
        w_kq, w_pv = w_kq - lr * grad_kq, w_pv - lr * grad_pv
    return w_kq, w_pv, history
