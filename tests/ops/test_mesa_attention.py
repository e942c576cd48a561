"""mesa_attention (chunked) against the step-by-step reference, closed-form ridge regression and linear attention."""

from __future__ import annotations

import pytest
import torch

from mesa_lm.ops import linear_attention, mesa_attention, mesa_attention_naive


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def make_inputs(
    B: int = 2,
    T: int = 11,
    H: int = 3,
    D: int = 4,
    Dv: int = 5,
    gated: bool = True,
    lam_kind: str = "diag",
    init: bool = True,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> dict:
    """Well-conditioned random inputs: small keys, lam ~ U(0.5, 1.5), gates ~ U(0.5, 1), PSD H0."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=dtype)

    def uni(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=dtype)

    out = dict(q=rnd(B, T, H, D), k=rnd(B, T, H, D) / D**0.5, v=rnd(B, T, H, Dv))
    out["lam"] = uni(0.5, 1.5, *((H, D) if lam_kind == "diag" else (H,)))
    out["gamma"] = uni(0.5, 1.0, B, T, H) if gated else None
    out["beta"] = uni(0.5, 1.0, B, T, H) if gated else None
    if init:
        a = rnd(B, H, D, D)
        out["initial_state"] = (a @ a.transpose(-1, -2) / D, rnd(B, H, Dv, D))
    return out


CASES = [
    # (T, chunk_size, gated, lam_kind, init, D, Dv)
    (11, 4, True, "diag", True, 4, 5),  # ragged last chunk, everything on
    (11, 4, False, "scalar", False, 4, 5),
    (12, 4, True, "scalar", False, 6, 3),  # T divisible by chunk_size
    (1, 4, True, "diag", True, 4, 5),  # T = 1
    (7, 5, False, "diag", True, 3, 3),
    (9, 64, True, "diag", True, 4, 2),  # single (partial) chunk
    (9, 1, True, "scalar", True, 4, 2),  # chunk_size = 1
]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("T,C,gated,lam_kind,init,D,Dv", CASES)
def test_chunk_matches_naive(dtype, tol, T, C, gated, lam_kind, init, D, Dv):
    x = make_inputs(T=T, D=D, Dv=Dv, gated=gated, lam_kind=lam_kind, init=init, dtype=dtype)
    o, (h, g) = mesa_attention(**x, output_final_state=True, chunk_size=C)
    o_ref, (h_ref, g_ref) = mesa_attention_naive(**x, output_final_state=True)
    assert o.shape == (2, T, 3, Dv) and o.dtype == dtype
    assert h.shape == (2, 3, D, D) and g.shape == (2, 3, Dv, D)
    assert rel_err(o, o_ref) <= tol
    assert rel_err(h, h_ref) <= tol
    assert rel_err(g, g_ref) <= tol
    assert torch.equal(mesa_attention(**x, chunk_size=C), o)  # output_final_state=False returns o alone


def test_state_carry_equals_full_sequence():
    """Running two halves with the carried state equals one pass over the whole sequence."""
    x = make_inputs(T=10, init=True)
    o_full, st_full = mesa_attention(**x, output_final_state=True, chunk_size=3)
    first = {n: (t[:, :6] if n in ("q", "k", "v", "gamma", "beta") else t) for n, t in x.items()}
    second = {n: (t[:, 6:] if n in ("q", "k", "v", "gamma", "beta") else t) for n, t in x.items()}
    o1, st1 = mesa_attention(**first, output_final_state=True, chunk_size=3)
    second["initial_state"] = st1
    o2, st2 = mesa_attention(**second, output_final_state=True, chunk_size=3)
    assert rel_err(torch.cat([o1, o2], dim=1), o_full) <= 1e-12
    assert rel_err(st2[0], st_full[0]) <= 1e-12 and rel_err(st2[1], st_full[1]) <= 1e-12


@pytest.mark.parametrize("impl", ["chunk", "naive"])
@pytest.mark.parametrize("lam_kind", ["diag", "scalar"])
def test_gradcheck(impl, lam_kind):
    x = make_inputs(B=1, T=5, H=2, D=3, Dv=2, gated=True, lam_kind=lam_kind, init=True, seed=1)
    names = ["q", "k", "v", "lam", "gamma", "beta"]
    leaves = [x[n].clone().requires_grad_() for n in names] + [s.clone().requires_grad_() for s in x["initial_state"]]

    def f(q, k, v, lam, gamma, beta, h0, g0):
        kw = dict(chunk_size=2) if impl == "chunk" else {}
        fn = mesa_attention if impl == "chunk" else mesa_attention_naive
        o, (h, g) = fn(q, k, v, lam, gamma, beta, (h0, g0), output_final_state=True, **kw)
        return o, h, g

    assert torch.autograd.gradcheck(f, leaves)


def test_gradcheck_ungated_no_init():
    x = make_inputs(B=1, T=5, H=2, D=3, Dv=2, gated=False, init=False, seed=2)
    leaves = [x[n].clone().requires_grad_() for n in ("q", "k", "v", "lam")]
    assert torch.autograd.gradcheck(lambda q, k, v, lam: mesa_attention(q, k, v, lam, chunk_size=2), leaves)


def test_ungated_is_ridge_regression():
    """o_t = Phi_t q_t with Phi_t = V_t^T K_t (K_t^T K_t + Lambda)^{-1}, K_t, V_t the tokens up to and including t."""
    B, T, H, D, Dv = 1, 9, 2, 4, 3
    x = make_inputs(B=B, T=T, H=H, D=D, Dv=Dv, gated=False, init=False, seed=3)
    o = mesa_attention(x["q"], x["k"], x["v"], x["lam"], chunk_size=4)
    for h in range(H):
        reg = torch.diag(x["lam"][h])
        for t in range(T):
            K, V = x["k"][0, : t + 1, h], x["v"][0, : t + 1, h]  # (t+1, D), (t+1, Dv)
            phi = V.T @ K @ torch.linalg.inv(K.T @ K + reg)
            assert rel_err(o[0, t, h], phi @ x["q"][0, t, h]) <= 1e-10
            # Same minimiser as least squares on the augmented system [K; sqrt(Lambda)] W = [V; 0].
            A = torch.cat([K, reg.sqrt()])
            Y = torch.cat([V, torch.zeros(D, Dv, dtype=V.dtype)])
            w = torch.linalg.lstsq(A, Y).solution  # (D, Dv) = Phi^T
            assert rel_err(o[0, t, h], w.T @ x["q"][0, t, h]) <= 1e-10


@pytest.mark.parametrize("gated", [False, True])
def test_large_regulariser_tends_to_linear_attention(gated):
    """(H + c I)^{-1} = I / c - H / c^2 + ..., so c * mesa -> linear attention with error O(1/c)."""
    x = make_inputs(T=10, gated=gated, init=False, seed=4)
    ref = linear_attention(x["q"], x["k"], x["v"], x["gamma"], chunk_size=4)
    errs = []
    for c in (1e6, 1e8):
        lam = torch.full_like(x["lam"], c)
        o = mesa_attention(x["q"], x["k"], x["v"], lam, gamma=x["gamma"], chunk_size=4)
        errs.append(rel_err(c * o, ref))
    assert errs[0] < 1e-4
    assert errs[1] < errs[0] / 10


def test_bf16_inputs():
    x32 = make_inputs(T=13, dtype=torch.float32, seed=5)
    o32, (h32, g32) = mesa_attention(**x32, output_final_state=True, chunk_size=4)
    xb = {n: (t.bfloat16() if n in ("q", "k", "v", "gamma", "beta", "lam") else t) for n, t in x32.items()}
    ob, (hb, gb) = mesa_attention(**xb, output_final_state=True, chunk_size=4)  # initial state stays float32
    assert ob.dtype == torch.bfloat16 and hb.dtype == torch.float32 and gb.dtype == torch.float32
    assert all(torch.isfinite(t).all() for t in (ob, hb, gb))
    assert rel_err(ob, o32) <= 2e-2
    assert rel_err(hb, h32) <= 2e-2 and rel_err(gb, g32) <= 2e-2
    ob_naive = mesa_attention_naive(**xb)
    assert ob_naive.dtype == torch.bfloat16 and rel_err(ob_naive, o32) <= 2e-2


def test_initial_state_symmetric_part():
    """Only the symmetric part of H0 matters (both implementations)."""
    x = make_inputs(T=6, seed=6)
    h0, g0 = x["initial_state"]
    skew = torch.randn_like(h0)
    x_skew = dict(x, initial_state=(h0 + skew - skew.transpose(-1, -2), g0))
    for fn in (mesa_attention, mesa_attention_naive):
        assert rel_err(fn(**x_skew), fn(**x)) <= 1e-12
