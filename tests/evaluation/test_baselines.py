"""Regression baselines against closed forms computed independently."""

import torch

from mesa_lm.evaluation import baselines as B
from mesa_lm.evaluation.icl_regression import PromptSpec


def prompts(task="vector", dim=5, pairs=12, batch=64, noise=0.0, seed=0):
    return PromptSpec(task, dim, pairs, "normal", noise).sample(batch, torch.Generator().manual_seed(seed))


def test_least_squares_is_exact_from_d_examples_without_noise():
    for task in ("vector", "scalar"):
        x, y = prompts(task)
        out = 5 if task == "vector" else 1
        errors = B.squared_error(B.least_squares(x, y), y, out).mean(0)
        assert errors[5:].max() < 1e-9, task  # d = 5 examples determine W
        assert errors[1] > 0.1  # one example does not


def test_ridge_matches_the_augmented_least_squares_solution():
    x, y = prompts(batch=4)
    lam = 0.3
    predictions = B.ridge(x, y, lam)
    x64, y64 = x.double(), y.double()
    for b in range(4):
        for i in (1, 3, 7, 11):
            # ridge = least squares on [X; sqrt(lam) I] -> [Y; 0], solved by lstsq (a different algorithm)
            a = torch.cat([x64[b, :i], lam**0.5 * torch.eye(5, dtype=torch.float64)])
            t = torch.cat([y64[b, :i], torch.zeros(5, 5, dtype=torch.float64)])
            phi_t = torch.linalg.lstsq(a, t).solution
            assert torch.allclose(predictions[b, i], x64[b, i] @ phi_t, atol=1e-10)


def test_gd_one_step_matches_its_closed_form_and_the_line_search_is_exact():
    x, y = prompts(batch=32)
    eta = B.line_search_gd_step(x, y)
    predictions = B.gd_one_step(x, y, eta)
    x64, y64 = x.double(), y.double()
    for i in (1, 4, 11):
        phi = sum(y64[:, j, :, None] * x64[:, j, None, :] for j in range(i))  # minus the gradient at 0
        assert torch.allclose(predictions[:, i], eta[i] * (phi @ x64[:, i, :, None])[..., 0], atol=1e-10)

        def loss(step):
            return (y64[:, i] - step * (phi @ x64[:, i, :, None])[..., 0]).pow(2).sum()

        # the line-searched step is the minimiser: nudging it either way costs
        assert loss(eta[i]) <= min(loss(eta[i] * 1.01), loss(eta[i] * 0.99))
    assert torch.all(predictions[:, 0] == 0)


def test_averaging_nearest_neighbours_and_seen_pairs_by_plain_loops():
    x, y = prompts(batch=3, pairs=8)
    x64, y64 = x.double(), y.double()
    avg, knn, seen = B.averaging(x, y), B.nearest_neighbours(x, y, 3), B.seen_pairs_least_squares(x, y)
    for b in range(3):
        for i in range(1, 8):
            w = sum(torch.outer(y64[b, j], x64[b, j]) for j in range(i)) / i
            assert torch.allclose(avg[b, i], w @ x64[b, i], atol=1e-12)
            order = sorted(range(i), key=lambda j: (x64[b, j] - x64[b, i]).norm().item())[:3]
            assert torch.allclose(knn[b, i], y64[b, order].mean(0), atol=1e-12)
            inputs = torch.cat([x64[b, :i], y64[b, :i]])
            outputs = torch.cat([y64[b, :i], x64[b, 1 : i + 1]])
            phi_t = torch.linalg.pinv(inputs) @ outputs
            assert torch.allclose(seen[b, i], x64[b, i] @ phi_t, atol=1e-8)


def test_run_regression_baselines_tunes_on_separate_prompts():
    errors, tuned = B.run_regression_baselines(prompts(seed=1, noise=0.1), prompts(seed=2, noise=0.1), 5)
    assert set(errors) == {"least_squares", "ridge", "gd_1", "averaging", "3_nearest_neighbours",
                           "seen_pairs_least_squares"}
    assert all(e.shape == (64, 12) for e in errors.values())
    # with label noise a tuned ridge beats plain least squares near the interpolation threshold (i = d)
    assert errors["ridge"][:, 5].mean() < errors["least_squares"][:, 5].mean()
    assert tuned["ridge_lambda"] > 0
