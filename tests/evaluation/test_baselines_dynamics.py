"""Dynamics baselines (science.md section 4) against plain loops and each other."""

import torch

from mesa_lm.data.dynamics import sample_dynamics
from mesa_lm.evaluation import baselines_dynamics as D


def states(batch=16, length=20, noise=0.01, seed=0):
    return sample_dynamics("fully_observed", batch, length, torch.Generator().manual_seed(seed), state_dim=4,
                           noise_std=noise).double()


def test_lsq_gd_and_kernel_regression_match_plain_loops():
    s = states(batch=3)
    lam, phi0, eta, beta = 0.2, 0.3, 0.05, 2.0
    lsq, gd, kernel = D.lsq(s, lam), D.gd_one(s, phi0, eta), D.softmax_kernel(s, beta)
    for b in range(3):
        for t in (0, 1, 5, 19):  # row t predicts s[t + 1] from s[0..t]
            X, Y, q = s[b, :t], s[b, 1 : t + 1], s[b, t]
            phi = Y.T @ X @ torch.linalg.inv(X.T @ X + lam * torch.eye(4, dtype=torch.float64))
            assert torch.allclose(lsq[b, t], phi @ q, atol=1e-10)
            grad_step = phi0 * torch.eye(4, dtype=torch.float64) + eta * (Y - phi0 * X).T @ X
            assert torch.allclose(gd[b, t], grad_step @ q, atol=1e-10)
            expected = torch.softmax(beta * X @ q, 0) @ Y if t else torch.zeros(4, dtype=torch.float64)
            assert torch.allclose(kernel[b, t], expected, atol=1e-10)


def test_mesa_layer_through_the_op_is_online_ridge():
    s = states()
    assert torch.allclose(D.mesa(s, 2.0), D.lsq(s, 0.5), atol=1e-9)  # Lambda = I / lam_h


def test_prop2_iteration_converges_to_ridge_and_its_polynomial_form_matches_the_iteration():
    s = states(batch=4, length=10)
    lam = 1.0
    h, g, q = D.context_statistics(s)
    params = {"log_lam": torch.tensor(0.0, dtype=torch.float64), "alpha": torch.full((3,), 0.05, dtype=torch.float64),
              "beta": torch.tensor([0.0, 0.3, 0.2], dtype=torch.float64), "eta": torch.tensor(1.0, dtype=torch.float64)}
    a = h + torch.eye(4, dtype=torch.float64) / lam
    x_prev = x = torch.zeros_like(q)
    for alpha, beta in zip(params["alpha"], params["beta"]):  # the iteration on vectors
        x, x_prev = x + alpha * (q - (a @ x[..., None])[..., 0]) + beta * (x - x_prev), x
    assert torch.allclose(D.prop2(s, params), (g @ x[..., None])[..., 0], atol=1e-10)
    assert torch.allclose(D.prop2_polynomial(D.prop2_krylov(s, 3), params), D.prop2(s, params), atol=1e-10)
    top = torch.linalg.eigvalsh(a).max().item()
    many = {**params, "alpha": torch.full((300,), 1.0 / top, dtype=torch.float64),
            "beta": torch.zeros(300, dtype=torch.float64)}
    assert torch.allclose(D.prop2(s, many), D.lsq(s, lam), atol=1e-4)


def test_tuned_baselines_order_as_expected():
    train, test = states(batch=64, length=25, seed=1), states(batch=64, length=25, seed=2)
    errors, tuned = D.run_dynamics_baselines(train, test, prop2_steps=(1,), prop2_iterations=50)
    late = {name: e[:, 10:].mean().item() for name, e in errors.items()}
    assert late["lsq"] < 1e-3  # after d = 4 noisy pairs least squares has found W
    assert late["lsq"] < late["gd_1"] < late["zero"]
    assert abs(late["mesa"] - late["lsq"]) < 1e-3
    assert late["softmax_kernel"] < late["zero"]
    # GD-1's eta is the exact minimiser for its phi0: nudging it costs
    base = D.next_step_error(D.gd_one(train, tuned["gd_1_phi0"], tuned["gd_1_eta"]), train).mean()
    for factor in (0.99, 1.01):
        assert D.next_step_error(D.gd_one(train, tuned["gd_1_phi0"], tuned["gd_1_eta"] * factor), train).mean() >= base
