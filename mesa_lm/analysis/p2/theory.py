"""The limit of `ab` predicted for [P2]'s process: the best step size of the one-step-GD predictor, in closed form.

Within the diagonal structure the model predicts `yhat_t = c g_t`, `c = ab`, with

    g_t = (1/(t-1)) sum_{i<t} x_{i+1} x_i^H x_t          (one GD step from 0 on the in-context OLS loss),

so the population loss `L(c) = 1/2 E sum_{t=2}^{T-1} |c g_t - x_{t+1}|^2` is quadratic in c and minimised by

    c* = E sum_t Re<g_t, x_{t+1}> / E sum_t |g_t|^2.

With `x_t = W^{t-1} z` (z = x_1 real, w_j = exp(i theta_j)), `x_i^H x_t = sum_k z_k^2 w_k^{t-i}` and

    g_{t,j} = z_j w_j^t (z_j^2 + (1/(t-1)) sum_{k != j} z_k^2 sum_{n=1}^{t-1} (w_k / w_j)^n).

Averaging over theta, `E (w_k / w_j)^n = 0` for k != j and n != 0, so the cross terms vanish from the numerator and
only their squares survive in the denominator:

    E Re<g_t, x_{t+1}> = M4,   E |g_t|^2 = M6 + M24 / (t-1),
    M4 = E sum_j z_j^4,  M6 = E sum_j z_j^6,  M24 = E sum_{j != k} z_j^2 z_k^4,

and, with N = T - 2 loss terms and H = sum_{n=1}^{N} 1/n,

    c* = N M4 / (N M6 + H M24).

Gaussian N(0, s^2 I): c* = N / (s^2 (5N + (d-1) H)) -> 1/(5 s^2); sparse +-c e_j: c* = 1/c^2 exactly (M24 = 0);
all ones: c* = N / (N + (d-1) H). At position T the expected prediction ratio is
`E Re<x_{T+1}, c* g_T> / |x_{T+1}|^2 = c* E[sum z^4 / sum z^2]` (|x_{T+1}| does not depend on theta): exactly 1 for the
sparse start (g_t = c^2 x_{t+1} there, so the prediction is exact at every t), `3d/(d+2) N/(5N + (d-1)H)` for the
Gaussian one whatever sigma, which is why only the former recovers the next token.
"""

from __future__ import annotations

import math

import torch

from .process import Start, sample_sequences

Tensor = torch.Tensor


def moments(start: Start, d: int) -> dict[str, float]:
    """M2 = E sum z_j^2, M4, M6, M24 (module docstring) and R = E[sum z^4 / sum z^2] of the initial token."""
    s = start.scale
    if start.kind == "gaussian":
        # sum z^4 / sum z^2 = r^2 sum u^4 with z = r u, u uniform on the sphere: E r^2 = d s^2, E sum u^4 = 3/(d+2).
        return {"M2": d * s**2, "M4": 3 * d * s**4, "M6": 15 * d * s**6, "M24": 3 * d * (d - 1) * s**6,
                "R": 3 * d * s**2 / (d + 2)}  # fmt: skip
    if start.kind == "sparse":
        return {"M2": s**2, "M4": s**4, "M6": s**6, "M24": 0.0, "R": s**2}
    return {"M2": d * s**2, "M4": d * s**4, "M6": d * s**6, "M24": d * (d - 1) * s**6, "R": s**2}


def ab_limit(start: Start, d: int, T: int) -> float:
    """The closed-form c* = N M4 / (N M6 + H M24) for loss terms t = 2 .. T-1."""
    mo, n = moments(start, d), T - 2
    harmonic = sum(1.0 / k for k in range(1, n + 1))
    return n * mo["M4"] / (n * mo["M6"] + harmonic * mo["M24"])


def ratio_limit(start: Start, d: int, T: int) -> float:
    """Expected prediction ratio at position T of the structured model with ab = c*: c* E[sum z^4 / sum z^2]."""
    return ab_limit(start, d, T) * moments(start, d)["R"]


def test_error_limit(start: Start, d: int, T: int) -> float:
    """E|c* g_T - x_{T+1}|^2 / E|x_{T+1}|^2 = (c*^2 (M6 + M24/(T-1)) - 2 c* M4 + M2) / M2."""
    mo, c = moments(start, d), ab_limit(start, d, T)
    return (c**2 * (mo["M6"] + mo["M24"] / (T - 1)) - 2 * c * mo["M4"] + mo["M2"]) / mo["M2"]


def gd_sums(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per sequence, `sum_t Re<g_t, x_{t+1}>` and `sum_t |g_t|^2` over t = 2 .. L-1 for x (m, L, d), by definition."""
    m, length, d = x.shape
    corr = torch.zeros(m, d, d, dtype=x.dtype)  # sum_{i<t} x_{i+1} x_i^H
    num = torch.zeros(m, dtype=torch.float64)
    den = torch.zeros(m, dtype=torch.float64)
    for t in range(2, length):  # 1-based position t is index t-1
        corr += x[:, t - 1].unsqueeze(-1) * x[:, t - 2].conj().unsqueeze(-2)
        g = (corr * x[:, t - 1].unsqueeze(-2)).sum(-1) / (t - 1)
        num += (x[:, t].conj() * g).real.sum(-1)
        den += g.abs().square().sum(-1)
    return num, den


def ab_fit(x: Tensor) -> float:
    """The c minimising `sum_t |c g_t - x_{t+1}|^2` on the sequences x (the training-set optimum in the structure)."""
    num, den = gd_sums(x)
    return (num.sum() / den.sum()).item()


def ab_limit_mc(
    start: Start, d: int, T: int, n: int, generator: torch.Generator, chunk: int = 20_000
) -> tuple[float, float]:
    """Monte Carlo estimate of c* from n fresh sequences, and its standard error (delta method for a ratio)."""
    parts = [gd_sums(sample_sequences(start, min(chunk, n - i), T, d, generator)) for i in range(0, n, chunk)]
    num, den = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    c = (num.sum() / den.sum()).item()
    stderr = (num - c * den).std().item() / math.sqrt(n) / den.mean().item()
    return c, stderr
