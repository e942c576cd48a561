"""Few-shot regression baselines: each predicts the token after `x_i` from the pairs `(x_j, y_j)`, `j < i`, only.

All work in token space: `x` (B, N, d) inputs and `y` (B, N, d) label tokens (the scalar task's label token is
`(y, 0, ..., 0)`), fit a map `Phi` from inputs to labels and return predictions (B, N, d), the label token predicted
at every pair. They compute in float64, so closed forms are exact to rounding. Position `i = 0` has no examples:
every baseline predicts 0 there.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor

RIDGE_GRID = tuple(10.0**e for e in (-4, -3, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2))


def _f64(*tensors: Tensor) -> list[Tensor]:
    return [t.to(torch.float64) for t in tensors]


def least_squares(x: Tensor, y: Tensor) -> Tensor:
    """Minimum-norm least squares: `Phi_i = argmin sum_{j<i} ||y_j - Phi x_j||^2` (pseudo-inverse), `yhat_i = Phi_i x_i`.

    From `i >= d` noise-free examples in general position `Phi_i` is the true map, so the error is 0.
    """
    x, y = _f64(x, y)
    out = torch.zeros_like(y)
    for i in range(1, x.shape[1]):
        phi_t = torch.linalg.pinv(x[:, :i]) @ y[:, :i]  # (B, d, d_y): Phi^T
        out[:, i] = (x[:, i, None, :] @ phi_t)[:, 0]
    return out


def ridge(x: Tensor, y: Tensor, lam: float) -> Tensor:
    """Ridge regression: `Phi_i^T = (X_i^T X_i + lam I)^{-1} X_i^T Y_i` over the pairs `j < i`; `yhat_i = Phi_i x_i`."""
    x, y = _f64(x, y)
    d = x.shape[-1]
    eye = torch.eye(d, dtype=x.dtype)
    out = torch.zeros_like(y)
    for i in range(1, x.shape[1]):
        xi, yi = x[:, :i], y[:, :i]
        phi_t = torch.linalg.solve(xi.transpose(1, 2) @ xi + lam * eye, xi.transpose(1, 2) @ yi)
        out[:, i] = (x[:, i, None, :] @ phi_t)[:, 0]
    return out


def gd_one_step_direction(x: Tensor, y: Tensor) -> Tensor:
    """`u_i = sum_{j<i} y_j (x_j . x_i)`: minus the gradient at `Phi = 0` of `1/2 sum_{j<i} ||y_j - Phi x_j||^2`, applied
    to `x_i`. One gradient step of size `eta` from 0 predicts `eta * u_i`."""
    x, y = _f64(x, y)
    scores = torch.tril(x @ x.transpose(1, 2), diagonal=-1)  # (B, i, j): x_i . x_j for j < i
    return scores @ y


def gd_one_step(x: Tensor, y: Tensor, eta: Tensor | float) -> Tensor:
    """GD-1: `yhat_i = eta_i * sum_{j<i} y_j (x_j . x_i)`, one gradient step from `Phi = 0`; `eta` scalar or (N,)."""
    u = gd_one_step_direction(x, y)
    eta = torch.as_tensor(eta, dtype=u.dtype)
    return (eta[:, None] if eta.ndim else eta) * u


def line_search_gd_step(x: Tensor, y: Tensor) -> Tensor:
    """The exact line search of GD-1's step per number of examples: `eta_i = sum_b y_i . u_i / sum_b u_i . u_i`, which
    minimises `sum_b ||y_i - eta_i u_i||^2` (a quadratic in `eta_i`) over the tuning prompts `b`. Returns (N,)."""
    u = gd_one_step_direction(x, y)
    y64 = y.to(torch.float64)
    numerator = (u * y64).sum(dim=(0, 2))
    denominator = u.pow(2).sum(dim=(0, 2))
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-300), torch.zeros_like(numerator))


def averaging(x: Tensor, y: Tensor) -> Tensor:
    """Garg et al.'s averaging estimator: `Phi_i = (1/i) sum_{j<i} y_j x_j^T`, i.e. GD-1 with `eta = 1/i`."""
    n = x.shape[1]
    eta = torch.cat([torch.zeros(1), 1.0 / torch.arange(1, n, dtype=torch.float64)]).to(torch.float64)
    return gd_one_step(x, y, eta)


def nearest_neighbours(x: Tensor, y: Tensor, k: int = 3) -> Tensor:
    """The mean label of the `min(k, i)` examples `x_j`, `j < i`, nearest to `x_i` in Euclidean distance."""
    x, y = _f64(x, y)
    out = torch.zeros_like(y)
    for i in range(1, x.shape[1]):
        distances = (x[:, :i] - x[:, i, None]).norm(dim=-1)  # (B, i)
        nearest = distances.topk(min(k, i), largest=False).indices
        out[:, i] = torch.gather(y[:, :i], 1, nearest[..., None].expand(-1, -1, y.shape[-1])).mean(1)
    return out


def seen_pairs_least_squares(x: Tensor, y: Tensor) -> Tensor:
    """Least squares on the pairs an autoregressive model trained on dynamics actually sees in `[x_1, y_1, x_2, ...]`:
    `(x_j, y_j)` and the spurious `(y_j, x_{j+1})` for `j < i`; minimum norm, `yhat_i = Phi_i x_i` ([P1]'s explanation
    of the "early ascent" of few-shot transfer)."""
    x, y = _f64(x, y)
    out = torch.zeros_like(y)
    for i in range(1, x.shape[1]):
        inputs = torch.cat([x[:, :i], y[:, :i]], dim=1)
        outputs = torch.cat([y[:, :i], x[:, 1 : i + 1]], dim=1)
        phi_t = torch.linalg.pinv(inputs) @ outputs
        out[:, i] = (x[:, i, None, :] @ phi_t)[:, 0]
    return out


def squared_error(predictions: Tensor, y: Tensor, out_dim: int) -> Tensor:
    """`1/2 ||y_i - yhat_i||^2` over the first `out_dim` coordinates (the label itself): (B, N) in float64."""
    diff = predictions.to(torch.float64)[..., :out_dim] - y.to(torch.float64)[..., :out_dim]
    return 0.5 * diff.pow(2).sum(-1)


def tune_ridge(x: Tensor, y: Tensor, out_dim: int, grid: tuple[float, ...] = RIDGE_GRID) -> float:
    """The ridge regulariser of `grid` with the least mean error over all positions of the tuning prompts."""
    errors = [squared_error(ridge(x, y, lam), y, out_dim).mean().item() for lam in grid]
    return grid[min(range(len(grid)), key=errors.__getitem__)]


def run_regression_baselines(
    tune: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], out_dim: int, knn: int = 3
) -> tuple[dict[str, Tensor], dict[str, object]]:
    """Every baseline's error (B, N) on the test prompts, with hyperparameters tuned on separate tuning prompts.

    Returns the errors by name and the tuned hyperparameters (ridge `lambda`, GD-1 steps per position).
    """
    x, y = test
    lam = tune_ridge(*tune, out_dim)
    eta = line_search_gd_step(*tune)
    predictions = {
        "least_squares": least_squares(x, y),
        "ridge": ridge(x, y, lam),
        "gd_1": gd_one_step(x, y, eta),
        "averaging": averaging(x, y),
        f"{knn}_nearest_neighbours": nearest_neighbours(x, y, knn),
        "seen_pairs_least_squares": seen_pairs_least_squares(x, y),
    }
    errors = {name: squared_error(p, y, out_dim) for name, p in predictions.items()}
    return errors, {"ridge_lambda": lam, "gd_1_eta": eta.tolist()}
