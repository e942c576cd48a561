"""Next-step baselines on linear dynamics (science.md section 4), batched in torch, in float64.

Every baseline takes the states `s` (B, T + 1, d) = `s_1 .. s_{T+1}` and returns predictions (B, T, d) of
`s_{t+1}` made from `s_1 .. s_t` only (row t - 1 predicts `s_{t+1}`). The pairs available at time t are
`(s_i, s_{i+1})`, `i < t`; with `H_t = sum_{i<t} s_i s_i^T` and `G_t = sum_{i<t} s_{i+1} s_i^T`, the regression
baselines are functions of (`H_t`, `G_t`, `s_t`). `tune_*` functions fit hyperparameters on training sequences.
"""

from __future__ import annotations

import math

import torch

from ..ops.mesa.naive import mesa_attention_naive

Tensor = torch.Tensor

LAMBDA_GRID = tuple(10.0**e for e in (-4, -3, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 3, 4))
PHI0_GRID = tuple(i / 20 for i in range(-10, 31))  # Phi_0 = phi0 * I, phi0 in [-0.5, 1.5]
BETA_GRID = tuple(2.0**e for e in range(-3, 9))


def _split(s: Tensor) -> tuple[Tensor, Tensor]:
    """Queries `s_1..s_T` and targets `s_2..s_{T+1}`, float64."""
    s = s.to(torch.float64)
    return s[:, :-1], s[:, 1:]


def context_statistics(s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """`H_t = sum_{i<t} s_i s_i^T`, `G_t = sum_{i<t} s_{i+1} s_i^T` (B, T, d, d) and the queries `s_t` (B, T, d)."""
    queries, targets = _split(s)
    outer_h = queries[..., :, None] * queries[..., None, :]
    outer_g = targets[..., :, None] * queries[..., None, :]
    # exclusive cumulative sums: the pair (s_t, s_{t+1}) is not known at time t
    h = torch.cumsum(outer_h, dim=1) - outer_h
    g = torch.cumsum(outer_g, dim=1) - outer_g
    return h, g, queries


def next_step_error(predictions: Tensor, s: Tensor) -> Tensor:
    """`1/2 ||s_{t+1} - prediction_t||^2` per sequence and position: (B, T)."""
    return 0.5 * (predictions.to(torch.float64) - s.to(torch.float64)[:, 1:]).pow(2).sum(-1)


def zero(s: Tensor) -> Tensor:
    """The zero predictor."""
    return torch.zeros_like(_split(s)[1])


def lsq(s: Tensor, lam: Tensor | float) -> Tensor:
    """Ridge least squares: `yhat_t = G_t (H_t + lam_t I)^{-1} s_t`; `lam` a scalar or one per position (T,)."""
    h, g, q = context_statistics(s)
    lam = torch.as_tensor(lam, dtype=h.dtype)
    lam = lam.expand(h.shape[1]) if lam.ndim == 0 else lam
    eye = torch.eye(h.shape[-1], dtype=h.dtype)
    x = torch.linalg.solve(h + lam[:, None, None] * eye, q[..., None])
    return (g @ x)[..., 0]


def gd_one(s: Tensor, phi0: float, eta: float) -> Tensor:
    """GD-1 (Proposition 1): one step from `Phi_0 = phi0 I` on `L_t(Phi) = sum_{i<t} 1/2 ||s_{i+1} - Phi s_i||^2`:
    `Phi = Phi_0 + eta sum_{i<t} (s_{i+1} - Phi_0 s_i) s_i^T`, `yhat_t = Phi s_t = phi0 s_t + eta (G_t - phi0 H_t) s_t`."""
    h, g, q = context_statistics(s)
    return phi0 * q + eta * ((g - phi0 * h) @ q[..., None])[..., 0]


def mesa(s: Tensor, lam: float) -> Tensor:
    """One exact mesa layer ([P1]) with keys `s_{t-1}` (`s_0 = 0`), values and queries `s_t`, `Lambda = I / lam`:
    `o_t = G_t (H_t + I / lam)^{-1} s_t`, the online ridge regression with one regulariser for all positions,
    computed by the project's reference op `mesa_attention_naive`."""
    queries, _ = _split(s)
    keys = torch.nn.functional.pad(queries, (0, 0, 1, 0))[:, :-1]
    lam_diag = torch.full((1,), 1.0 / lam, dtype=torch.float64)
    return mesa_attention_naive(queries[:, :, None], keys[:, :, None], queries[:, :, None], lam_diag)[:, :, 0]


def softmax_kernel(s: Tensor, beta: float) -> Tensor:
    """Softmax kernel regression: `yhat_t = sum_{i<t} s_{i+1} softmax_i(beta s_i . s_t)`; 0 at t = 1 (no pairs)."""
    queries, targets = _split(s)
    scores = beta * queries @ queries.transpose(1, 2)  # (B, t, i)
    T = scores.shape[1]
    allowed = torch.ones(T, T, dtype=torch.bool).tril(-1)
    weights = torch.softmax(scores.masked_fill(~allowed, -math.inf), dim=-1).nan_to_num(0.0)  # row t=1 is all -inf
    return weights @ targets


def prop2_krylov(s: Tensor, steps: int) -> Tensor:
    """`G_t H_t^m s_t` for `m = 0 .. steps - 1`: (steps, B, T, d). Prop-2's prediction is a combination of these."""
    h, g, q = context_statistics(s)
    vectors, power = [], q
    for _ in range(steps):
        vectors.append((g @ power[..., None])[..., 0])
        power = (h @ power[..., None])[..., 0]
    return torch.stack(vectors)


def prop2_coefficients(params: dict[str, Tensor]) -> Tensor:
    """The iterate `x_k` of Prop-2 as a polynomial in `H_t` applied to `s_t`: coefficients (k,) of `H^0 .. H^{k-1}`.

    With `A = H + mu I` (`mu = 1 / lam`), `A x` maps coefficients `c` to `shift(c) + mu c`, so the whole iteration
    runs on k scalars, independent of the data.
    """
    steps = len(params["alpha"])
    mu = torch.exp(-params["log_lam"])
    unit = torch.zeros(steps + 1, dtype=torch.float64)
    unit[0] = 1.0
    x_prev = x = torch.zeros(steps + 1, dtype=torch.float64)
    for alpha, beta in zip(params["alpha"], params["beta"]):
        a_x = torch.cat([x.new_zeros(1), x[:-1]]) + mu * x
        x, x_prev = x + alpha * (unit - a_x) + beta * (x - x_prev), x
    return x[:steps]  # after k steps the degree is at most k - 1


def prop2(s: Tensor, params: dict[str, Tensor]) -> Tensor:
    """Prop-2(k): `k = len(alpha)` steps of a second-order Richardson (Chebyshev-like) iteration towards
    `x = (H_t + I / lam)^{-1} s_t`:  `x_0 = 0`, `x_{j+1} = x_j + alpha_j (s_t - A x_j) + beta_j (x_j - x_{j-1})`,
    then one GD step from 0 on the preconditioned input: `yhat_t = eta G_t x_k`. With exact `x` and `eta = 1` this is
    ridge least squares; `params` holds `log_lam`, `alpha` (k,), `beta` (k,), `eta` (all float64, learnable).
    """
    h, g, q = context_statistics(s)
    a = h + torch.exp(-params["log_lam"]) * torch.eye(h.shape[-1], dtype=h.dtype)
    x_prev = x = torch.zeros_like(q)
    for alpha, beta in zip(params["alpha"], params["beta"]):
        x, x_prev = x + alpha * (q - (a @ x[..., None])[..., 0]) + beta * (x - x_prev), x
    return params["eta"] * (g @ x[..., None])[..., 0]


def prop2_polynomial(krylov: Tensor, params: dict[str, Tensor]) -> Tensor:
    """`prop2` from precomputed `prop2_krylov` vectors: fast for tuning small k (the monomial basis loses accuracy
    for large k, where `prop2` itself should be used)."""
    return params["eta"] * torch.einsum("m,mbtd->btd", prop2_coefficients(params), krylov)


# --- tuning on training sequences --------------------------------------------------------------------------------


def tune_lsq(s: Tensor, grid: tuple[float, ...] = LAMBDA_GRID) -> Tensor:
    """LSQ's regulariser line-searched on `grid` separately at every position: (T,)."""
    errors = torch.stack([next_step_error(lsq(s, lam), s).mean(0) for lam in grid])  # (grid, T)
    return torch.tensor(grid, dtype=torch.float64)[errors.argmin(0)]


def tune_gd_one(s: Tensor, grid: tuple[float, ...] = PHI0_GRID) -> tuple[float, float]:
    """GD-1's `(phi0, eta)`: for each `phi0` on `grid` the loss is quadratic in `eta`, so `eta` is its exact minimiser
    `sum (s_{t+1} - phi0 s_t) . u_t / sum u_t . u_t` with `u_t = (G_t - phi0 H_t) s_t`; the best pair wins."""
    h, g, q = context_statistics(s)
    _, targets = _split(s)
    best = (math.inf, 0.0, 0.0)
    for phi0 in grid:
        u = ((g - phi0 * h) @ q[..., None])[..., 0]
        r = targets - phi0 * q
        eta = ((r * u).sum() / u.pow(2).sum().clamp(min=1e-300)).item()
        loss = 0.5 * (r - eta * u).pow(2).sum(-1).mean().item()
        if loss < best[0]:
            best = (loss, phi0, eta)
    return best[1], best[2]


def tune_scalar(fn, s: Tensor, grid: tuple[float, ...]) -> float:
    """The value on `grid` with the least mean next-step error of `fn(s, value)` over all positions."""
    errors = [next_step_error(fn(s, value), s).mean().item() for value in grid]
    return grid[min(range(len(grid)), key=errors.__getitem__)]


def tune_prop2(s: Tensor, steps: int, iterations: int = 300, lr: float = 0.05) -> dict[str, Tensor]:
    """Prop-2(`steps`) parameters learned by Adam on the mean next-step error of the training sequences.

    Step sizes are kept where the iteration cannot blow up late in a sequence: `alpha_j = alpha_max sigmoid(a_j)` with
    `alpha_max = 2 / (1.5 * the largest eigenvalue of any H_t + 1)` (plain Richardson converges for alpha < 2 /
    lambda_max) and `beta_j = tanh(b_j)` in (-1, 1).
    """
    h, _, _ = context_statistics(s)
    alpha_max = 2.0 / (1.5 * torch.linalg.eigvalsh(h[:, -1]).max().item() + 1.0)
    raw = {
        "log_lam": torch.zeros((), dtype=torch.float64),
        "a": torch.zeros(steps, dtype=torch.float64),  # alpha = alpha_max / 2 at the start
        "b": torch.zeros(steps, dtype=torch.float64),
        "eta": torch.ones((), dtype=torch.float64),
    }
    for p in raw.values():
        p.requires_grad_(True)

    def params() -> dict[str, Tensor]:
        alpha = alpha_max * torch.sigmoid(raw["a"])
        return {"log_lam": raw["log_lam"], "alpha": alpha, "beta": torch.tanh(raw["b"]), "eta": raw["eta"]}

    optimizer = torch.optim.Adam(raw.values(), lr=lr)
    krylov = prop2_krylov(s, steps)
    for _ in range(iterations):
        optimizer.zero_grad()
        loss = next_step_error(prop2_polynomial(krylov, params()), s).mean()
        loss.backward()
        optimizer.step()
    return {k: v.detach() for k, v in params().items()}


def run_dynamics_baselines(
    train: Tensor, test: Tensor, prop2_steps: tuple[int, ...] = (1, 2, 3), prop2_iterations: int = 300
) -> tuple[dict[str, Tensor], dict[str, object]]:
    """Every baseline tuned on `train` states and scored on `test` states: errors (B, T) by name, and the tuned values."""
    lam_t = tune_lsq(train)
    phi0, eta = tune_gd_one(train)
    mesa_lam = tune_scalar(mesa, train, LAMBDA_GRID)
    beta = tune_scalar(softmax_kernel, train, BETA_GRID)
    predictions = {
        "zero": zero(test),
        "lsq": lsq(test, lam_t),
        "gd_1": gd_one(test, phi0, eta),
        "mesa": mesa(test, mesa_lam),
        "softmax_kernel": softmax_kernel(test, beta),
    }
    tuned: dict[str, object] = {
        "lsq_lambda_per_position": lam_t.tolist(),
        "gd_1_phi0": phi0,
        "gd_1_eta": eta,
        "mesa_lambda": mesa_lam,
        "softmax_kernel_beta": beta,
    }
    for k in prop2_steps:
        params = tune_prop2(train, k, prop2_iterations)
        with torch.no_grad():
            predictions[f"prop2_{k}"] = prop2(test, params)
        tuned[f"prop2_{k}"] = {name: value.tolist() for name, value in params.items()}
    return {name: next_step_error(p, test) for name, p in predictions.items()}, tuned
