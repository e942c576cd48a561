"""The exact CG path (`cg_exact`, the gated default) through each of its preconditioners and its per-position fallback,
against the float64 step-by-step reference: outputs, final states and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mesa_lm.ops.chunking as chunking
import mesa_lm.ops.mesa.native as native
import mesa_lm.ops.mesa.solvers as solvers
from mesa_lm.ops import mesa_attention, mesa_attention_naive
from mesa_lm.ops.chunking import Decay
from mesa_lm.ops.mesa.preconditioner import DecayedRegulariserSolve

from .test_mesa_attention import make_inputs, rel_err

# (WOODBURY_CG_RANGE, JACOBI_CHUNK, JACOBI_SPREAD, MESA_LM_NATIVE) that force each path: every chunk decays by more
# than 0, none by more than inf; eager Jacobi CG on whole chunks, or on sub-chunks of 2 positions (with the tests'
# chunks of 4, two per chunk); with the diagonal scaling always (spread 0) or never (spread inf); or the compiled
# kernel (native.py) on sub-chunks of 2.
BRANCHES = {
    "woodbury": (float("inf"), 16, 0.0, "0"),
    "jacobi": (0.0, 1024, 0.0, "0"),
    "jacobi-subchunks": (0.0, 2, 0.0, "0"),
    "plain-subchunks": (0.0, 2, float("inf"), "0"),
    "native": (0.0, 2, 0.0, "1"),
}


@pytest.fixture(params=list(BRANCHES))
def branch(request, monkeypatch):
    woodbury_range, jacobi_chunk, jacobi_spread, use_native = BRANCHES[request.param]
    monkeypatch.setenv(native.ENV_MODE, use_native)
    monkeypatch.setattr(solvers, "NATIVE_SUB_CHUNK", jacobi_chunk)
    monkeypatch.setattr(solvers, "WOODBURY_CG_RANGE", woodbury_range)
    monkeypatch.setattr(solvers, "JACOBI_CHUNK", jacobi_chunk)
    monkeypatch.setattr(solvers, "JACOBI_SPREAD", jacobi_spread)
    monkeypatch.setattr(chunking, "GROUP_TOKENS", 8)  # groups of two chunks: the passes cross group boundaries
    monkeypatch.setattr(solvers, "CG_ELEMENTS", 1)  # CG on one chunk at a time: two parts per group
    return request.param


@pytest.mark.parametrize(
    "T,C,lam_kind,init",
    [(11, 4, "diag", True), (12, 4, "scalar", False), (1, 4, "diag", True), (9, 1, "diag", True),
     (21, 8, "diag", True), (13, 6, "scalar", True)],
)
def test_matches_reference_float64(branch, T, C, lam_kind, init, monkeypatch):
    calls, kernel_calls = [], []
    subchunks, kernel = solvers.MesaSolver._subchunks, solvers.native_jacobi_cg
    monkeypatch.setattr(solvers.MesaSolver, "_subchunks", lambda self, m: calls.append(m) or subchunks(self, m))
    monkeypatch.setattr(solvers, "native_jacobi_cg", lambda *a: kernel_calls.append(a) or kernel(*a))
    x = make_inputs(T=T, gated=True, lam_kind=lam_kind, init=init, seed=40)
    o, (h, g) = mesa_attention(**x, output_final_state=True, chunk_size=C, method="cg_exact")
    o_ref, (h_ref, g_ref) = mesa_attention_naive(**x, output_final_state=True)
    assert rel_err(o, o_ref) <= 1e-10 and rel_err(h, h_ref) <= 1e-12 and rel_err(g, g_ref) <= 1e-12
    # The eager sub-chunk path ran exactly where its chunks divide into sub-chunks of 2; the kernel on every chunk.
    assert bool(calls) == (branch.endswith("-subchunks") and min(C, T) > 2 and min(C, T) % 2 == 0)
    assert bool(kernel_calls) == (branch == "native")


@pytest.mark.parametrize("gated", [True, False])
# (MESA_LM_NATIVE, JACOBI_SPREAD): eager CG with and without the diagonal scaling, and the kernel (which always
# scales by the diagonal, whatever the spread).
@pytest.mark.parametrize("use_native,jacobi_spread", [("0", 0.0), ("0", float("inf")), ("1", 0.0)])
@pytest.mark.parametrize("jacobi_chunk", [2, 4, 1024])
@pytest.mark.parametrize("cg_elements", [1, solvers.CG_ELEMENTS])
def test_tolerance_cg_on_subchunks_matches_reference(
    gated, use_native, jacobi_spread, jacobi_chunk, cg_elements, monkeypatch
):
    """`cg` (Jacobi or plain CG to a tolerance, eager or the compiled kernel) on sub-chunks of 2 or 4 positions, or
    whole chunks of 8, with and without gates, on a group's chunks at once or one chunk at a time: at float64
    tolerance it is the reference, outputs and gradients."""
    monkeypatch.setenv(native.ENV_MODE, use_native)
    monkeypatch.setattr(solvers, "NATIVE_SUB_CHUNK", jacobi_chunk)
    monkeypatch.setattr(solvers, "JACOBI_CHUNK", jacobi_chunk)
    monkeypatch.setattr(solvers, "JACOBI_SPREAD", jacobi_spread)
    monkeypatch.setattr(solvers, "CG_ELEMENTS", cg_elements)
    monkeypatch.setattr(chunking, "GROUP_TOKENS", 16)
    x = make_inputs(T=27, gated=gated, init=True, seed=43)
    leaves = {n: t.clone().requires_grad_() for n, t in x.items() if isinstance(t, torch.Tensor)}
    ref_leaves = {n: t.detach().clone().requires_grad_() for n, t in leaves.items()}
    o = mesa_attention(**leaves, initial_state=x["initial_state"], chunk_size=8, method="cg", cg_max_iter=200)
    o_ref = mesa_attention_naive(**ref_leaves, initial_state=x["initial_state"])
    assert rel_err(o, o_ref) <= 1e-10
    w = torch.randn_like(o)
    (o * w).sum().backward()
    (o_ref * w).sum().backward()
    for n in leaves:
        assert rel_err(leaves[n].grad, ref_leaves[n].grad) <= 1e-9, n


def test_gradcheck(branch):
    x = make_inputs(B=1, T=5, H=2, D=3, Dv=2, gated=True, init=True, seed=41)
    leaves = [x[n].clone().requires_grad_() for n in ("q", "k", "v", "lam", "gamma", "beta")]
    leaves += [s.clone().requires_grad_() for s in x["initial_state"]]

    def f(q, k, v, lam, gamma, beta, h0, g0):
        o, (h, g) = mesa_attention(
            q, k, v, lam, gamma, beta, (h0, g0), output_final_state=True, chunk_size=4, method="cg_exact"
        )
        return o, h, g

    assert torch.autograd.gradcheck(f, leaves)


@pytest.mark.parametrize("C", [16, 64])
def test_float32_as_accurate_as_a_direct_solve(branch, C):
    """Language-model inputs (unit keys, diagonal Lambda = I): within 2x of the float32 direct solve's error."""
    gen = torch.Generator().manual_seed(42)
    B, T, H, D = 2, 80, 2, 16
    q, k = (F.normalize(torch.randn(B, T, H, D, generator=gen), dim=-1) for _ in range(2))
    v = torch.randn(B, T, H, D, generator=gen)
    x = dict(q=q, k=k, v=v, lam=torch.ones(H, D), gamma=0.9 + 0.1 * torch.rand(B, T, H, generator=gen),
             beta=0.5 + 0.5 * torch.rand(B, T, H, generator=gen))  # fmt: skip
    ref = mesa_attention_naive(**{n: t.double() for n, t in x.items()})
    floor = (mesa_attention_naive(**x).double() - ref).norm() / ref.norm()
    err = (mesa_attention(**x, chunk_size=C, method="cg_exact").double() - ref).norm() / ref.norm()
    assert err <= 2 * floor + 10 * torch.finfo(torch.float32).eps


def test_auto_is_cg_exact_with_a_forget_gate():
    x = make_inputs(T=9, gated=True, dtype=torch.float32, seed=43)
    assert torch.equal(mesa_attention(**x, chunk_size=4), mesa_attention(**x, chunk_size=4, method="cg_exact"))


def test_unconverged_chunks_are_solved_per_position(monkeypatch):
    """Ill-conditioned systems (large keys, tiny Lambda) that CG cannot finish get the per-position solve: the
    result is then `cholesky`'s, and the solver says how many chunks it handed over."""
    x = make_inputs(T=12, gated=True, init=False, dtype=torch.float32, seed=44)
    x["k"] = 30 * x["k"]
    x["lam"] = torch.full_like(x["lam"], 1e-3)
    handed = []
    per_position = solvers.MesaSolver._per_position

    def spy(self, b, chunks=None):
        handed.append(0 if chunks is None else chunks.numel())
        return per_position(self, b, chunks)

    monkeypatch.setattr(solvers.MesaSolver, "_per_position", spy)
    o = mesa_attention(**x, chunk_size=4, method="cg_exact")
    assert sum(handed) > 0
    monkeypatch.setattr(solvers.MesaSolver, "_per_position", per_position)
    assert rel_err(o, mesa_attention(**x, chunk_size=4, method="cholesky")) <= 1e-5


def test_preconditioner_bounds_the_spectrum():
    """P_t^{-1} M_t has its eigenvalues between 1 and abar / a_t (so its condition number is at most
    sqrt(a_first / a_last)), whatever the state; and P_t = M_t - shift_t Lambda exactly."""
    x = make_inputs(B=1, T=6, H=1, D=4, Dv=2, gated=True, init=True, seed=45)
    C = 6
    k, beta, gamma, lam = x["k"][:, :, 0], x["beta"][:, :, 0], x["gamma"][:, :, 0], x["lam"][0]
    h0 = x["initial_state"][0][0, 0]
    h0 = 0.5 * (h0 + h0.T)
    decay = Decay.make(gamma.reshape(1, 1, 1, C), C, torch.float64, k.device)
    pre = DecayedRegulariserSolve(h0.reshape(1, 1, 1, 4, 4), k.reshape(1, 1, 1, C, 4), beta.reshape(1, 1, 1, C),
                                  lam.reshape(1, 4), decay)  # fmt: skip
    a = decay.a.flatten()
    abar = (a[0] * a[-1]).sqrt()
    h = h0
    for t in range(C):
        h = gamma[0, t] * h + beta[0, t] * torch.outer(k[0, t], k[0, t])
        m = h + torch.diag(lam)
        eye = torch.eye(4, dtype=torch.float64)
        pinv = torch.stack([pre(eye[j].expand(1, 1, 1, C, 4))[0, 0, 0, t] for j in range(4)], dim=-1)  # P_t^{-1}
        assert rel_err(torch.linalg.inv(pinv), m - pre.shift.flatten()[t] * torch.diag(lam)) <= 1e-12
        ev = torch.linalg.eigvals(pinv @ m).real
        lo, hi = sorted((1.0, (abar / a[t]).item()))
        assert ev.min() >= lo - 1e-10 and ev.max() <= hi + 1e-10
