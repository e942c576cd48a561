"""Synthetic tasks: the papers' conventions, reproducibility from (seed, step), and the split over processes."""

import pytest
import torch

from mesa_lm.data.dynamics import constructed_tokens, haar_orthogonal, sample_dynamics
from mesa_lm.data.synthetic import process_rows
from mesa_lm.data.tasks import make_task
from mesa_lm.data.tasks.dynamics import DynamicsTask


EPS32 = torch.finfo(torch.float32).eps


def test_haar_matrices_are_orthogonal():
    w = haar_orthogonal(16, 10, torch.Generator().manual_seed(0))
    assert w.dtype == torch.float32
    # Orthogonal in float64, then rounded to float32 (eps / 2 per entry) and multiplied in float32 (10-term dot products
    # of unit rows): |W W^T - I| <= about (n + 1) eps; 8x that (1.0e-5) stays far below any non-orthogonality.
    n = 10
    torch.testing.assert_close(w @ w.transpose(-1, -2), torch.eye(n).expand(16, n, n), atol=8 * (n + 1) * EPS32, rtol=0)


def test_fully_observed_dynamics_follow_their_matrix():
    # With no noise, s_{t+1} = W s_t: least squares on one sequence recovers a W that is orthogonal.
    states = sample_dynamics("fully_observed", 1, 40, torch.Generator().manual_seed(1), noise_std=0.0)[0].double()
    x, y = states[:-1], states[1:]
    w = torch.linalg.lstsq(x, y).solution.T
    # The states are float32: each s_{t+1} = W s_t carries a rounding of about n eps |s|, which least squares turns into
    # an error of about cond(x) n eps in W (cond(x) = 5.7 here, so 8x that is 5e-5; measured: 1.4e-7).
    n = 10
    tol = 8 * torch.linalg.cond(x).item() * n * EPS32
    torch.testing.assert_close(w @ w.T, torch.eye(n, dtype=torch.float64), atol=tol, rtol=0)
    assert states[0].abs().max() <= 1.0


def test_zero_predictor_scores_about_1_667():
    batch = DynamicsTask(seed=0).global_batch(0, 4096)
    zero_loss = 0.5 * batch["targets"].pow(2).sum(-1).mean().item()
    assert abs(zero_loss - 10 / 6) < 0.03


def test_contracting_dynamics_shrink():
    states = sample_dynamics("contracting", 64, 40, torch.Generator().manual_seed(2), noise_std=0.0)
    assert states[:, -1].norm(dim=-1).max() < 0.9**30 * states[:, 0].norm(dim=-1).max() * 10


def test_fixed_w_control_shares_one_matrix():
    task = DynamicsTask(dynamics="fixed_w", noise_std=0.0, seed=5)
    batch = task.global_batch(0, 3)
    predicted = batch["inputs"] @ task.fixed_w.T
    # float32 on both sides: two 10-term dot products, each within about n eps of max|s| (W is orthogonal)
    tol = 8 * 10 * EPS32 * batch["targets"].abs().max().item()
    torch.testing.assert_close(predicted, batch["targets"], atol=tol, rtol=0)


def test_partially_observed_and_nonlinear_shapes():
    partial = DynamicsTask(dynamics="partially_observed", state_dim=5, hidden_dim=15).global_batch(0, 4)
    assert partial["inputs"].shape == (4, 50, 5)
    nonlinear = DynamicsTask(dynamics="nonlinear").global_batch(0, 4)
    assert nonlinear["inputs"].shape == (4, 50, 10) and torch.isfinite(nonlinear["inputs"]).all()


def test_constructed_tokens_layout():
    states = torch.randn(2, 5, 3)
    tokens = constructed_tokens(states)
    assert tokens.shape == (2, 5, 12)
    assert torch.all(tokens[..., :3] == 0)
    assert torch.equal(tokens[..., 3:6], states) and torch.equal(tokens[..., 6:9], states)
    assert torch.all(tokens[:, 0, 9:] == 0) and torch.equal(tokens[:, 1:, 9:], states[:, :-1])


def test_regression_prompts_mark_label_positions():
    batch = make_task("fewshot_regression", num_pairs=4, noise_std=0.0).global_batch(0, 2)
    tokens, targets, mask = batch["inputs"], batch["targets"], batch["target_mask"]
    assert tokens.shape == (2, 8, 10) and mask.tolist()[0] == [True, False] * 4
    torch.testing.assert_close(targets[:, 0::2], tokens[:, 1::2])  # at x_i the target is y_i
    scalar = make_task("scalar_regression", num_pairs=3, noise_std=0.0).global_batch(0, 2)
    assert scalar["targets"].shape == (2, 6, 1)
    torch.testing.assert_close(scalar["targets"][:, 0::2, 0], scalar["inputs"][:, 1::2, 0])


def test_batches_are_reproducible_and_differ_by_step_and_stream():
    a, b = DynamicsTask(seed=3), DynamicsTask(seed=3)
    assert torch.equal(a.global_batch(7, 4)["inputs"], b.global_batch(7, 4)["inputs"])
    assert not torch.equal(a.global_batch(7, 4)["inputs"], a.global_batch(8, 4)["inputs"])
    assert not torch.equal(a.global_batch(7, 4)["inputs"], a.global_batch(7, 4, stream=1)["inputs"])


def test_process_rows_partition_the_global_batch():
    batch = {"inputs": torch.arange(8)[:, None]}
    parts = [process_rows(batch, rank, 2)["inputs"] for rank in range(2)]
    assert parts[0].flatten().tolist() == [0, 1, 2, 3] and parts[1].flatten().tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="cannot be split evenly over 3 processes"):
        process_rows(batch, 0, 3)


def test_bad_task_options():
    with pytest.raises(ValueError, match="dynamics='chaotic' is invalid: must be one of 'fully_observed'"):
        DynamicsTask(dynamics="chaotic")
    with pytest.raises(ValueError, match="tokens='constructed' is invalid: must be one of 'plain'"):
        make_task("fewshot_regression", tokens="constructed")
    with pytest.raises(ValueError, match="seq_len=1 is invalid"):
        make_task("dynamics", seq_len=1)
    with pytest.raises(ValueError, match="unknown task 'chess'; allowed: dynamics"):
        make_task("chess")
