"""The compiled Jacobi-CG kernel (`native.py`, `jacobi_cg.cpp`) against direct float64 solves of the same systems and
against the eager solver; its use by the ops, its modes and its build cache."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import mesa_lm.ops.mesa.native as native
import mesa_lm.ops.mesa.solvers as solvers
from mesa_lm.ops import mesa_attention, mesa_attention_naive
from mesa_lm.ops.chunking import Decay

from .test_mesa_attention import make_inputs, rel_err


def systems(G=2, B=2, H=3, C=7, D=5, gated=True, dtype=torch.float64, seed=0, key_scale=1.0):
    """One group of chunks as the solver sees it, Lambda different per head (catches a wrong head index)."""
    gen = torch.Generator().manual_seed(seed)
    k = F.normalize(torch.randn(G, B, H, C, D, generator=gen, dtype=dtype), dim=-1) * key_scale
    beta = 0.5 + 0.5 * torch.rand(G, B, H, C, generator=gen, dtype=dtype)
    gamma = 0.7 + 0.3 * torch.rand(G, B, H, C, generator=gen, dtype=dtype) if gated else None
    a = torch.randn(G, B, H, D, 2 * D, generator=gen, dtype=dtype)
    h = a @ a.transpose(-1, -2) / D
    lam = 0.3 + torch.arange(H, dtype=dtype)[:, None] + torch.rand(H, D, generator=gen, dtype=dtype)
    b = torch.randn(G, B, H, C, D, generator=gen, dtype=dtype)
    decay = Decay.make(gamma, C, dtype, k.device)
    solver = solvers.MesaSolver("cg", h, k, k * beta[..., None], beta, lam, decay, 1e-5, 100)
    return solver, b


def direct(solver: solvers.MesaSolver, b: torch.Tensor) -> torch.Tensor:
    """x_t = (H_t + Lambda)^{-1} b_t by a float64 LU solve per position."""
    m = solver._matrices(slice(None), torch.float64)
    return torch.linalg.solve(m, b.double()[..., None])[..., 0]


def kernel(solver, b, tol, max_iter=100, sub_chunk=3):
    return native.jacobi_cg(solver.h, solver.k, solver.kb, solver.decay.a, solver.decay.dec, solver.lam, b, tol,
                            max_iter, sub_chunk)  # fmt: skip


def position_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref).norm(dim=-1) / ref.norm(dim=-1)).max().item()


@pytest.fixture
def fresh_native(monkeypatch, tmp_path):
    """The kernel's module state reset (nothing loaded, no failure, no warning given), built in a new cache."""
    monkeypatch.setattr(native, "_library", None)
    monkeypatch.setattr(native, "_failure", None)
    monkeypatch.setattr(native, "_warned", False)
    monkeypatch.setattr(native, "_threaded", False)
    monkeypatch.setattr(native, "_tuned", True)
    monkeypatch.setenv("MESA_LM_CACHE", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("C,D,sub_chunk", [(7, 5, 3), (16, 16, 8), (1, 3, 8), (9, 33, 4), (12, 8, 1), (5, 64, 16)])
def test_float64_matches_direct_solve(gated, C, D, sub_chunk):
    """Every chunk length, feature size and sub-chunk length (ragged last sub-chunks, vector tails, D = 64 blocks):
    at a float64 tolerance the kernel is the direct solve, all systems converge, and the peak is the largest diagonal
    entry of H_t + Lambda."""
    solver, b = systems(C=C, D=D, gated=gated, seed=C + D)
    x, active, peak, iterations = kernel(solver, b, tol=1e-13, sub_chunk=sub_chunk)
    assert position_err(x, direct(solver, b)) <= 1e-10
    assert not active.any() and active.shape == (*b.shape[:-1], 1)
    assert 1 <= iterations <= D + 1  # CG in exact arithmetic ends within D steps
    assert torch.allclose(peak, solver._diagonals().flatten(1).amax(1), rtol=1e-13, atol=0)


@pytest.mark.parametrize("gated", [True, False])
def test_float32_meets_its_tolerance(gated):
    """float32 stops at relative residual 1e-5 per system: the error against the float64 solution is that small too
    (these systems have condition numbers of a few)."""
    solver, b = systems(C=16, D=32, gated=gated, dtype=torch.float32, seed=3)
    x, active, _, _ = kernel(solver, b, tol=1e-5, sub_chunk=8)
    assert not active.any()
    assert position_err(x, direct(solver, b)) <= 1e-4


def test_matches_eager_solver(monkeypatch):
    """Kernel and eager Jacobi CG solve the same systems to the same answer (float64, tight tolerance)."""
    solver, b = systems(C=8, D=6, seed=5)
    x_native, _, peak_native, _ = kernel(solver, b, tol=1e-13, sub_chunk=4)
    monkeypatch.setenv(native.ENV_MODE, "0")
    monkeypatch.setattr(solvers, "JACOBI_CHUNK", 4)
    x_eager, active, peak_eager = solver._fine_jacobi_cg(b, 1e-13, 100)
    assert not active.any()
    assert position_err(x_native, x_eager.double()) <= 1e-10
    assert torch.allclose(peak_native, peak_eager, rtol=1e-13, atol=0)


def test_unconverged_systems_are_reported():
    """max_iter = 0 returns the Jacobi start b / diag with every system active; one iteration leaves far-reaching
    systems unconverged and says so (cg_exact then solves those chunks directly)."""
    solver, b = systems(C=6, D=8, seed=7, key_scale=3.0)
    x0, active0, _, its0 = kernel(solver, b, tol=1e-13, max_iter=0)
    assert its0 == 0 and active0.all()
    assert torch.allclose(x0, b / solver._diagonals(), rtol=1e-13, atol=0)
    _, active1, _, its1 = kernel(solver, b, tol=1e-13, max_iter=1)
    assert its1 == 1 and active1.any()


def test_same_result_on_any_thread_count():
    """Each chunk is solved by one thread with the same arithmetic: the result does not depend on the thread count."""
    solver, b = systems(G=3, B=2, H=4, C=16, D=16, dtype=torch.float32, seed=9)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        x1 = kernel(solver, b, tol=1e-5, sub_chunk=8)[0]
        torch.set_num_threads(2)
        x2 = kernel(solver, b, tol=1e-5, sub_chunk=8)[0]
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(x1, x2)


@pytest.mark.parametrize("method", ["cg", "cg_exact"])
def test_ops_take_the_kernel_on_cpu(method, monkeypatch):
    """By default (MESA_LM_NATIVE unset: auto) the CPU ops solve with the kernel, and outputs and gradients still
    match the float64 reference."""
    monkeypatch.delenv(native.ENV_MODE, raising=False)
    monkeypatch.setattr(solvers, "WOODBURY_CG_RANGE", 0.0)  # cg_exact: Jacobi CG on every chunk
    calls = []
    run = solvers.native_jacobi_cg
    monkeypatch.setattr(solvers, "native_jacobi_cg", lambda *a: calls.append(a[-1]) or run(*a))
    x = make_inputs(T=21, D=5, gated=True, seed=11)
    leaves = {n: t.clone().requires_grad_() for n, t in x.items() if isinstance(t, torch.Tensor)}
    ref = {n: t.detach().clone().requires_grad_() for n, t in leaves.items()}
    o = mesa_attention(**leaves, initial_state=x["initial_state"], chunk_size=8, method=method,
                       **({"cg_tol": 1e-13} if method == "cg" else {}))  # fmt: skip
    o_ref = mesa_attention_naive(**ref, initial_state=x["initial_state"])
    w = torch.randn_like(o)
    (o * w).sum().backward()
    (o_ref * w).sum().backward()
    assert calls and set(calls) == {solvers.NATIVE_SUB_CHUNK}  # forward and backward solves
    assert rel_err(o, o_ref) <= 1e-10
    for n in leaves:
        assert rel_err(leaves[n].grad, ref[n].grad) <= 1e-9, n


def test_mode_0_keeps_the_eager_solver(monkeypatch):
    monkeypatch.setenv(native.ENV_MODE, "0")
    monkeypatch.setattr(solvers, "native_jacobi_cg", lambda *a: pytest.fail("kernel called with MESA_LM_NATIVE=0"))
    x = make_inputs(T=9, gated=True, seed=12)
    o = mesa_attention(**x, chunk_size=4, method="cg_exact")
    assert rel_err(o, mesa_attention_naive(**x)) <= 1e-10


def test_bad_mode_is_an_error(monkeypatch):
    monkeypatch.setenv(native.ENV_MODE, "yes")
    x = make_inputs(T=5, gated=True)
    with pytest.raises(ValueError, match=r"MESA_LM_NATIVE='yes'; expected one of \('auto', '0', '1'\)"):
        mesa_attention(**x, method="cg")


def test_unbuildable_kernel_warns_once_and_falls_back(fresh_native, monkeypatch):
    """auto: a compiler that fails gives one RuntimeWarning naming the failure, and the eager solver's result;
    mode 1: the same failure is an error."""
    monkeypatch.setenv("CXX", "false")
    monkeypatch.delenv(native.ENV_MODE, raising=False)
    x = make_inputs(T=9, gated=True, seed=13)
    with pytest.warns(RuntimeWarning, match="could not be built .*false.*eager solver runs instead"):
        o = mesa_attention(**x, chunk_size=4, method="cg_exact")
    assert rel_err(o, mesa_attention_naive(**x)) <= 1e-10
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        mesa_attention(**x, chunk_size=4, method="cg_exact")
    monkeypatch.setenv(native.ENV_MODE, "1")
    with pytest.raises(RuntimeError, match="MESA_LM_NATIVE=1 but the compiled CG kernel could not be built"):
        mesa_attention(**x, chunk_size=4, method="cg_exact")


def test_build_is_cached(fresh_native, monkeypatch):
    """The first use compiles one library into the cache (no temporary left behind); a fresh process state loads
    that file again without compiling."""
    assert native.library() is not None
    built = sorted(p.name for p in fresh_native.iterdir())
    assert len(built) == 1 and built[0].startswith("mesa_kernels-") and not built[0].endswith(".tmp")
    stamp = (fresh_native / built[0]).stat().st_mtime_ns
    monkeypatch.setattr(native, "_library", None)
    monkeypatch.setattr(native.subprocess, "run", _no_compile(native.subprocess.run))
    assert native.library() is not None
    assert sorted(p.name for p in fresh_native.iterdir()) == built
    assert (fresh_native / built[0]).stat().st_mtime_ns == stamp


def _no_compile(run):
    def guarded(cmd, *args, **kwargs):
        assert "--version" in cmd, f"compiled again: {cmd}"
        return run(cmd, *args, **kwargs)

    return guarded


def test_portable_build_matches(fresh_native, monkeypatch):
    """Built without -march=native or OpenMP (the last flag set), the kernel gives the same answers."""
    monkeypatch.setattr(native, "FLAG_SETS", (("-O3",),))
    solver, b = systems(C=10, D=12, seed=15)
    with pytest.warns(RuntimeWarning, match="built without OpenMP"):
        x, active, _, _ = kernel(solver, b, tol=1e-13, sub_chunk=4)
    assert not active.any() and position_err(x, direct(solver, b)) <= 1e-10


def test_untuned_build_warns(fresh_native, monkeypatch):
    """Where the build for this CPU (-march=native) fails and a portable one loads, that is said once (on x86 a
    portable build was 5-7x slower here), with the compiler's reason; the kernels still run, tuned or not."""
    bad = ("-O3", "-march=native", "-fopenmp", "-fno-such-option-anywhere")
    monkeypatch.setattr(native, "FLAG_SETS", (bad, ("-O3", "-fopenmp")))
    with pytest.warns(RuntimeWarning, match="without -march=native.*no-such-option"):
        assert native.library() is not None
    assert not native._tuned and native._threaded
    solver, b = systems(C=6, D=5, seed=16)
    x, active, _, _ = kernel(solver, b, tol=1e-13, sub_chunk=4)
    assert not active.any() and position_err(x, direct(solver, b)) <= 1e-10


def test_differentiable_calls_keep_the_eager_path():
    """The kernels have no autograd: a direct call of `lower_inverse` on a tensor that requires grad runs torch's
    code, so its gradient is right (against autograd through torch.linalg)."""
    from mesa_lm.ops.mesa.triangular import lower_inverse

    gen = torch.Generator().manual_seed(17)
    a = torch.randn(3, 6, 12, generator=gen, dtype=torch.float64)
    m = (a @ a.transpose(-1, -2) / 6 + torch.eye(6, dtype=torch.float64)).requires_grad_()
    w = torch.randn(3, 6, 6, generator=gen, dtype=torch.float64)
    (grad,) = torch.autograd.grad((lower_inverse(m) * w).sum(), m)
    (want,) = torch.autograd.grad((torch.linalg.inv(torch.linalg.cholesky(m)) * w).sum(), m)
    assert torch.allclose(grad, want, rtol=1e-10, atol=1e-12)


def test_iteration_count_is_what_every_system_needed():
    """The reported count is the most any sub-chunk needed: with it as max_iter every system converges, with one
    fewer some do not. The first sub-chunk is the hard one (long keys), the later ones easy (their gates forget it),
    so a count taken from the last sub-chunk would be too small."""
    gen = torch.Generator().manual_seed(19)
    G, B, H, C, D = 1, 1, 2, 12, 16
    k = F.normalize(torch.randn(G, B, H, C, D, generator=gen, dtype=torch.float64), dim=-1)
    k[..., :4, :] *= 6.0
    gamma = torch.full((G, B, H, C), 0.9, dtype=torch.float64)
    gamma[..., 4:] = 1e-3
    lam = torch.ones(H, D, dtype=torch.float64)
    solver = solvers.MesaSolver("cg", torch.zeros(G, B, H, D, D, dtype=torch.float64), k, k, None, lam,
                                Decay.make(gamma, C, torch.float64, k.device), 1e-5, 100)  # fmt: skip
    b = torch.randn(G, B, H, C, D, generator=gen, dtype=torch.float64)
    _, active, _, its = kernel(solver, b, tol=1e-13, sub_chunk=4)
    last = kernel(solver.__class__("cg", solver.h, k[..., 8:, :].contiguous(), k[..., 8:, :].contiguous(), None, lam,
                                   Decay.make(gamma[..., 8:].contiguous(), 4, torch.float64, k.device), 1e-5, 100),
                  b[..., 8:, :].contiguous(), tol=1e-13, sub_chunk=4)[3]  # fmt: skip
    assert not active.any() and its > last  # the hard sub-chunk set the count
    assert not kernel(solver, b, tol=1e-13, max_iter=its, sub_chunk=4)[1].any()
    assert kernel(solver, b, tol=1e-13, max_iter=its - 1, sub_chunk=4)[1].any()


def test_huge_max_iter_is_clamped_not_wrapped():
    """cg_max_iter beyond the C int range runs to convergence (it was passed unchecked, wrapping to 0 at 2^32)."""
    x = make_inputs(T=9, gated=True, seed=21)
    for max_iter in (2**31, 2**32, 2**32 + 1):
        o = mesa_attention(**x, chunk_size=4, method="cg", cg_tol=1e-12, cg_max_iter=max_iter)
        assert rel_err(o, mesa_attention_naive(**x)) <= 1e-10, max_iter


def test_failed_flag_sets_are_not_retried(fresh_native, monkeypatch):
    """A compiler failure leaves a marker per flag set, so the next process does not compile again."""
    monkeypatch.setenv("CXX", "false")
    monkeypatch.setenv(native.ENV_MODE, "0")
    with pytest.raises(RuntimeError, match="false"):
        native._build_and_load()
    assert len(list(fresh_native.glob("*.failed"))) == len(native.FLAG_SETS)
    monkeypatch.setattr(native.subprocess, "run", _no_compile(native.subprocess.run))
    with pytest.raises(RuntimeError, match="failed before"):
        native._build_and_load()


def test_nan_in_a_matrix_gives_nan_not_the_start():
    """A NaN off the diagonal of a chunk's start state leaves the diagonals (so the Jacobi start b / diag) finite; the
    residual is NaN, and those systems must come back NaN (as the eager solver's do), not as converged starts."""
    solver, b = systems(C=6, D=5, seed=18)
    solver.h[1, 0, 2, 0, 3] = float("nan")
    x, active, _, _ = kernel(solver, b, tol=1e-13, sub_chunk=4)
    hit = torch.zeros(x.shape[:-1], dtype=torch.bool)
    hit[1, 0, 2] = True
    assert x[hit].isnan().all() and not x[~hit].isnan().any()
    assert position_err(x[~hit].view(-1, 5), direct(solver, b)[~hit].view(-1, 5)) <= 1e-10


def test_wrappers_refuse_other_dtypes_and_shapes(monkeypatch):
    """The kernels index raw memory: a dtype other than float32/float64, or a mask of the wrong shape, is an error
    before any call (float16 had been read as float64: a heap overrun); so is a call with the kernels off."""
    solver, b = systems(C=6, D=5, seed=19)
    with pytest.raises(TypeError, match="float16"):
        native.read_out(b.half(), solver.k.half(), b.half(), solver.h.half(), None, solver.decay.dec.half()[0, 0, 0])
    with pytest.raises(ValueError, match="dec has shape"):
        native.read_out(b, solver.k, b, solver.h, solver.decay.a, solver.decay.dec[0, 0, 0])
    one_head = solvers.MesaSolver("cg", solver.h, solver.k, solver.kb, None, solver.lam[:1], solver.decay, 1e-5, 9)
    with pytest.raises(ValueError, match="lam has shape"):
        kernel(one_head, b, 1e-5)
    monkeypatch.setenv(native.ENV_MODE, "0")
    with pytest.raises(RuntimeError, match="kernels are off"):
        kernel(solver, b, 1e-5)
