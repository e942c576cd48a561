"""[P2] module: the closed-form limit of ab against Monte Carlo, gradients against autograd and finite differences,
the structure kept under diagonal init (exactly, on a symmetrised sample), GD moving ab to its limit, recovery."""

import json

import pytest
import torch
from safetensors.torch import load_file

from mesa_lm.analysis.p2 import experiment, model, theory
from mesa_lm.analysis.p2.process import Start, sample_sequences, tokens

D = 5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are small: one thread avoids the OpenMP overhead that dominates on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _symmetrised(x: torch.Tensor) -> torch.Tensor:
    """Each sequence under every sign flip of x_1's coordinates and every global phase shift k pi/2 of theta.

    Both are symmetries of the data distribution that fix [P2]'s diagonal structure; on a sample closed under them the
    gradient at a structured point is structured, so the off-structure entries stay exactly 0 (see docs/p2.md).
    """
    m, length, d = x.shape
    signs = torch.cartesian_prod(*[torch.tensor([1.0, -1.0], dtype=torch.float64)] * d).view(-1, 1, 1, d)
    t = torch.arange(length, dtype=torch.float64).view(1, -1, 1)
    phases = torch.stack([torch.exp(1j * k * torch.pi / 2 * t) for k in range(4)])  # (4, 1, L, 1)
    return (x.unsqueeze(0).unsqueeze(0) * signs.unsqueeze(1) * phases.unsqueeze(0)).reshape(-1, length, d)


@pytest.mark.parametrize(
    "start, T, n",
    [(Start("gaussian", 2.0), 10, 50_000), (Start("ones"), 20, 5_000), (Start("sparse", 0.5), 20, 1_000)],
)
def test_closed_form_limit_matches_monte_carlo(start, T, n):
    """The acceptance test; docs/p2.md has the same check with more samples (relative error ~0.2%)."""
    exact = theory.ab_limit(start, D, T)
    mc, stderr = theory.ab_limit_mc(start, D, T, n, _gen(1))
    assert abs(mc - exact) <= 4 * stderr + 1e-12 * exact
    assert abs(mc - exact) / exact < 0.02


def test_closed_forms_of_the_starts():
    n, harmonic = 98, sum(1 / k for k in range(1, 99))
    assert theory.ab_limit(Start("gaussian", 2.0), D, 100) == pytest.approx(n / (4 * (5 * n + 4 * harmonic)))
    assert theory.ab_limit(Start("sparse", 0.5), D, 100) == pytest.approx(4.0)
    assert theory.ratio_limit(Start("sparse", 2.0), D, 100) == pytest.approx(1.0)
    assert theory.test_error_limit(Start("sparse", 1.0), D, 100) == pytest.approx(0.0, abs=1e-12)
    # The Gaussian ratio does not depend on sigma: 3d/(d+2) * N / (5N + (d-1) H).
    assert theory.ratio_limit(Start("gaussian", 0.5), D, 100) == pytest.approx(15 / 7 * n / (5 * n + 4 * harmonic))


def test_structured_model_is_one_gd_step_with_step_size_ab():
    x = sample_sequences(Start("gaussian", 1.0), 6, 12, 3, _gen())
    w_kq, w_pv = model.init_weights(3, [(0.7, 1.3)])
    yhat, _ = model.forward(w_kq, w_pv, model.context(x))
    corr, g = torch.zeros(6, 3, 3, dtype=x.dtype), []
    for t in range(2, 12):
        corr += x[:, t - 1, :, None] * x[:, t - 2, None, :].conj()
        g.append((corr @ x[:, t - 1, :, None]).squeeze(-1) / (t - 1))
    torch.testing.assert_close(yhat[0], 0.7 * 1.3 * torch.stack(g, 1).reshape(-1, 3), rtol=1e-12, atol=1e-12)


def test_tokens_stack_current_and_previous_state():
    x = sample_sequences(Start("sparse", 1.0), 2, 4, 3, _gen())
    e = tokens(x)
    torch.testing.assert_close(e[:, :, :3], x)
    torch.testing.assert_close(e[:, 1:, 3:], x[:, :-1])
    assert (e[:, 0, 3:] == 0).all()


def _random_weights(k: int, d: int, scale: float = 0.3):
    g = _gen(3)
    shapes = ((k, 2 * d, 2 * d), (k, d, 2 * d))
    return tuple(scale * torch.randn(*s, generator=g, dtype=torch.complex128) for s in shapes)


def test_gradient_matches_autograd():
    ctx = model.context(sample_sequences(Start("gaussian", 1.0), 5, 9, 3, _gen()))
    w_kq, w_pv = _random_weights(2, 3)
    value, grad_kq, grad_pv = model.loss_and_grad(w_kq, w_pv, ctx)
    a, b = w_kq.clone().requires_grad_(), w_pv.clone().requires_grad_()
    reference = model.loss(a, b, ctx)
    reference.sum().backward()
    torch.testing.assert_close(value, reference.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(grad_kq, a.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad_pv, b.grad, rtol=1e-10, atol=1e-12)


def test_gradient_matches_finite_differences():
    """`grad = dL/dRe + i dL/dIm`, so the derivative along a complex direction v is Re sum conj(grad) v."""
    ctx = model.context(sample_sequences(Start("sparse", 1.0), 4, 8, 3, _gen()))
    w_kq, w_pv = _random_weights(1, 3)
    v_kq, v_pv = _random_weights(1, 3, scale=1.0)
    _, grad_kq, grad_pv = model.loss_and_grad(w_kq, w_pv, ctx)
    h = 1e-6
    plus, minus = model.loss(w_kq + h * v_kq, w_pv + h * v_pv, ctx), model.loss(w_kq - h * v_kq, w_pv - h * v_pv, ctx)
    numeric = (plus - minus) / (2 * h)
    analytic = (grad_kq.conj() * v_kq).real.sum() + (grad_pv.conj() * v_pv).real.sum()
    assert numeric.item() == pytest.approx(analytic.item(), rel=1e-7)


def _gd(x, lr, steps, inits=((0.5, 1.5),)):
    w_kq, w_pv = model.init_weights(x.shape[-1], list(inits))
    ctx = model.context(x)
    for _ in range(steps):
        _, g_kq, g_pv = model.loss_and_grad(w_kq, w_pv, ctx)
        w_kq, w_pv = w_kq - lr * g_kq, w_pv - lr * g_pv
    return w_kq, w_pv


def test_off_structure_stays_zero_under_diagonal_init():
    x = _symmetrised(sample_sequences(Start("gaussian", 1.0), 2, 12, 3, _gen()))  # 2 * 8 signs * 4 phases
    w_kq, w_pv = _gd(x, 1e-3, 5)
    assert model.off_structure_norm(w_kq, w_pv).item() < 1e-12
    assert abs(model.ab(w_kq, w_pv).item() - 0.75) > 1e-3  # it did move


def test_off_structure_appears_for_the_all_ones_start():
    x = _symmetrised(sample_sequences(Start("ones"), 1, 12, 3, _gen()))  # all signs: no longer all ones
    x = x[(x[:, 0].real > 0).all(-1)]  # keep the all-ones copies (phase shifts only)
    w_kq, w_pv = _gd(x, 1e-3, 5)
    assert model.off_structure_norm(w_kq, w_pv).item() > 1e-3


@pytest.mark.parametrize("start, lr", [(Start("sparse", 1.0), 4e-2), (Start("gaussian", 1.0), 5e-4)])
def test_gd_moves_ab_to_its_limit(start, lr):
    x = sample_sequences(start, 100, 20, D, _gen())
    limit = theory.ab_fit(x)  # the training-set optimum; the population one is checked against it below
    assert limit == pytest.approx(theory.ab_limit(start, D, 20), rel=0.1)
    inits = experiment.INITS
    w_kq, w_pv = _gd(x, lr, 60, inits)
    before = torch.tensor([a * b for a, b in inits])
    gap_before, gap_after = (before - limit).abs(), (model.ab(w_kq, w_pv) - limit).abs()
    assert (gap_after < 0.5 * gap_before).all(), (gap_before, gap_after)


def test_recovery_at_the_limit_depends_on_the_start():
    """With ab = c* the sparse start predicts x_{T+1} exactly; the Gaussian one gets the predicted ratio ~0.41."""
    T = 100
    for start in (Start("sparse", 2.0), Start("gaussian", 1.0)):
        x = sample_sequences(start, 4000, T + 1, D, _gen(2))
        w_kq, w_pv = model.init_weights(D, [(theory.ab_limit(start, D, T), 1.0)])
        metrics = model.test_metrics(w_kq, w_pv, model.context(x, first=T))
        if start.kind == "sparse":
            assert metrics["ratio"].item() == pytest.approx(1.0, abs=1e-12)
            assert metrics["test_error"].item() < 1e-20
        else:
            assert metrics["ratio"].item() == pytest.approx(theory.ratio_limit(start, D, T), abs=0.03)
            assert metrics["test_error"].item() == pytest.approx(theory.test_error_limit(start, D, T), rel=0.1)
            assert metrics["ratio"].item() < 0.5


def test_run_p2_writes_results_weights_and_figures(tmp_path):
    cfg = experiment.P2Config(m=8, m_test=16, T=12, steps=3)
    results = experiment.run_p2(tmp_path, cfg=cfg, device="cpu")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["starts"]) == {s.name for s, _ in experiment.STARTS}
    final = saved["starts"]["sparse-1"]["runs"]["a0.1_b0.1"]["final"]
    assert {"ab", "ab_gap", "off", "test_error", "ratio", "verdicts"} <= set(final)
    assert "recovers_next_token" in final["verdicts"]
    w = load_file(str(tmp_path / "weights" / "ones.safetensors"))
    assert w["W_KQ.real"].shape == (3, 10, 10) and w["W_PV.imag"].dtype == torch.float64
    for name in ("fig_ab.png", "fig_test_error.png", "fig_ratio.png", "fig_off.png", "fig_ones_weights.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert results["starts"]["ones"]["limit"]["ab"] == pytest.approx(theory.ab_limit(Start("ones"), D, 12))
