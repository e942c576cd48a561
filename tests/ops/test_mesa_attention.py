"""mesa_attention (chunked, every solve method) against the step-by-step reference, closed-form ridge regression and
linear attention; gradients of the implicit-differentiation backward against autograd through the reference."""

from __future__ import annotations

import pytest
import torch

import mesa_lm.ops.chunking as chunking
import mesa_lm.ops.mesa.native as native
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


def methods(gated: bool) -> list[str]:
    """The solve methods that apply: Woodbury is exact only without a forget gate."""
    return ["cholesky", "cg", "cg_exact"] if gated else ["woodbury", "cholesky", "cg", "cg_exact"]


def method_kwargs(method: str, dtype: torch.dtype) -> dict:
    # CG to a residual far below the tolerance under test, so the comparison checks the method, not the stop rule.
    if method == "cg":
        return dict(method="cg", cg_tol=1e-13 if dtype == torch.float64 else 1e-7, cg_max_iter=100)
    return dict(method=method)


@pytest.fixture
def small_groups(monkeypatch):
    """Groups of two chunks, so the streamed forward and backward cross group boundaries even at small T."""
    monkeypatch.setattr(chunking, "GROUP_TOKENS", 8)


# Every case with every method that applies to it (Woodbury needs gamma=None).
CASES_METHODS = [(*case, m) for case in CASES for m in ["auto", *methods(case[2])]]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("T,C,gated,lam_kind,init,D,Dv,method", CASES_METHODS)
def test_chunk_matches_naive(dtype, tol, T, C, gated, lam_kind, init, D, Dv, method, small_groups):
    x = make_inputs(T=T, D=D, Dv=Dv, gated=gated, lam_kind=lam_kind, init=init, dtype=dtype)
    kw = method_kwargs(method, dtype)
    o, (h, g) = mesa_attention(**x, output_final_state=True, chunk_size=C, **kw)
    o_ref, (h_ref, g_ref) = mesa_attention_naive(**x, output_final_state=True)
    assert o.shape == (2, T, 3, Dv) and o.dtype == dtype
    assert h.shape == (2, 3, D, D) and g.shape == (2, 3, Dv, D)
    assert h.dtype == dtype and g.dtype == dtype
    assert rel_err(o, o_ref) <= tol
    assert rel_err(h, h_ref) <= tol
    assert rel_err(g, g_ref) <= tol
    assert torch.equal(mesa_attention(**x, chunk_size=C, **kw), o)  # output_final_state=False returns o alone


def _grads(fn, x: dict, w: tuple, **kw) -> list[torch.Tensor]:
    """Gradients of sum(w * (o, H_T, G_T)) with respect to every input tensor."""
    leaves = {n: (t.detach().clone().requires_grad_() if torch.is_tensor(t) else t) for n, t in x.items()}
    if x.get("initial_state") is not None:
        leaves["initial_state"] = tuple(s.detach().clone().requires_grad_() for s in x["initial_state"])
    o, (h, g) = fn(**leaves, output_final_state=True, **kw)
    loss = (o * w[0]).sum() + (h * w[1]).sum() + (g * w[2]).sum()
    flat = [t for n, t in leaves.items() if torch.is_tensor(t)] + list(leaves.get("initial_state") or ())
    return list(torch.autograd.grad(loss, flat))


@pytest.mark.parametrize("T,C,gated,lam_kind,init,D,Dv,method", [c for c in CASES_METHODS if c[-1] != "auto"])
def test_gradients_match_naive_float32(T, C, gated, lam_kind, init, D, Dv, method, small_groups):
    """Implicit-differentiation gradients against autograd through the loop reference, for every input."""
    x = make_inputs(T=T, D=D, Dv=Dv, gated=gated, lam_kind=lam_kind, init=init, dtype=torch.float32, seed=11)
    gen = torch.Generator().manual_seed(12)
    w = tuple(torch.randn(*s, generator=gen) for s in ((2, T, 3, Dv), (2, 3, D, D), (2, 3, Dv, D)))
    got = _grads(mesa_attention, x, w, chunk_size=C, **method_kwargs(method, torch.float32))
    want = _grads(mesa_attention_naive, x, w)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert rel_err(a, b) <= 1e-3


@pytest.mark.parametrize("gated", [True, False])
def test_groups_cut_by_entries_match_naive(gated, monkeypatch):
    """Groups cut by the entries cap (one chunk of 4), two to a segment of GROUP_TOKENS = 8, default method: outputs,
    final states and every gradient against the float64 reference, with one pair of states saved per segment."""
    monkeypatch.setattr(chunking, "GROUP_TOKENS", 8)
    monkeypatch.setattr(chunking, "GROUP_ELEMENTS", 4 * 2 * 3 * 5)  # (B, H, Dv) = (2, 3, 5): one chunk of 4
    x = make_inputs(T=19, D=4, Dv=5, gated=gated, seed=5)
    leaves = {n: t.clone().requires_grad_() for n, t in x.items() if torch.is_tensor(t)}
    saved = mesa_attention(**leaves, initial_state=x["initial_state"], chunk_size=4).grad_fn.saved_tensors
    assert saved[6].shape[0] == saved[7].shape[0] == 3  # H and G at the starts of segments [0, 1], [2, 3], [4]
    gen = torch.Generator().manual_seed(6)
    w = tuple(torch.randn(*s, generator=gen, dtype=torch.float64) for s in ((2, 19, 3, 5), (2, 3, 4, 4), (2, 3, 5, 4)))
    got = _grads(mesa_attention, x, w, chunk_size=4)
    want = _grads(mesa_attention_naive, x, w)
    o, (h, g) = mesa_attention(**x, output_final_state=True, chunk_size=4)
    o_ref, (h_ref, g_ref) = mesa_attention_naive(**x, output_final_state=True)
    for a, b in zip([o, h, g, *got], [o_ref, h_ref, g_ref, *want]):
        assert rel_err(a, b) <= 1e-10


def test_woodbury_rejects_forget_gate():
    x = make_inputs(T=5, gated=True)
    with pytest.raises(ValueError, match="woodbury.*without a forget gate"):
        mesa_attention(**x, method="woodbury")
    with pytest.raises(ValueError, match="method is 'lu'"):
        mesa_attention(**x, method="lu")
    with pytest.raises(ValueError, match="cg_tol"):
        mesa_attention(**x, method="cg", cg_max_iter=0)


def test_cg_masks_finished_systems():
    """Zero queries are solved at once (x = 0, no 0 / 0); a cap of one iteration still gives finite outputs."""
    x = make_inputs(T=9, gated=True, dtype=torch.float32, seed=13)
    x["q"][:, 3] = 0.0
    o = mesa_attention(**x, chunk_size=4, method="cg")
    assert torch.isfinite(o).all()
    assert rel_err(o, mesa_attention_naive(**x)) <= 1e-4
    o1 = mesa_attention(**x, chunk_size=4, method="cg", cg_max_iter=1)
    assert torch.isfinite(o1).all()


def test_long_sequence_many_groups_float32():
    """A longer, realistic case (normalised keys, D = 16, several default-sized groups) in float32."""
    gen = torch.Generator().manual_seed(14)
    B, T, H, D = 1, 700, 2, 16
    q = torch.nn.functional.normalize(torch.randn(B, T, H, D, generator=gen), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(B, T, H, D, generator=gen), dim=-1)
    v = torch.randn(B, T, H, D, generator=gen)
    lam = 0.25 + torch.rand(H, D, generator=gen)
    gamma = 0.9 + 0.1 * torch.rand(B, T, H, generator=gen)
    for kw in (dict(method="woodbury"), dict(gamma=gamma, method="cholesky"), dict(gamma=gamma, method="cg")):
        o = mesa_attention(q, k, v, lam, chunk_size=32, **kw)
        ref = mesa_attention_naive(q.double(), k.double(), v.double(), lam.double(), gamma=(
            gamma.double() if "gamma" in kw else None))
        assert rel_err(o, ref) <= 1e-4


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


@pytest.mark.parametrize("impl", ["cholesky", "cg", "cg_exact", "naive"])
@pytest.mark.parametrize("lam_kind", ["diag", "scalar"])
@pytest.mark.parametrize("kernels", ["auto", "0"])
def test_gradcheck(impl, lam_kind, kernels, small_groups, monkeypatch):
    """float64 gradcheck of every input, gates and initial state included (T = 5 over chunks of 2: ragged), with the
    compiled CPU kernels (where they build) and with the torch code alone (MESA_LM_NATIVE=0, the GPU path)."""
    monkeypatch.setenv(native.ENV_MODE, kernels)
    x = make_inputs(B=1, T=5, H=2, D=3, Dv=2, gated=True, lam_kind=lam_kind, init=True, seed=1)
    names = ["q", "k", "v", "lam", "gamma", "beta"]
    leaves = [x[n].clone().requires_grad_() for n in names] + [s.clone().requires_grad_() for s in x["initial_state"]]

    def f(q, k, v, lam, gamma, beta, h0, g0):
        if impl == "naive":
            o, (h, g) = mesa_attention_naive(q, k, v, lam, gamma, beta, (h0, g0), output_final_state=True)
            return o, h, g
        kw = method_kwargs(impl, torch.float64)
        o, (h, g) = mesa_attention(q, k, v, lam, gamma, beta, (h0, g0), output_final_state=True, chunk_size=2, **kw)
        return o, h, g

    assert torch.autograd.gradcheck(f, leaves)


@pytest.mark.parametrize(
    "method,lam_kind", [("woodbury", "diag"), ("woodbury", "scalar"), ("cholesky", "scalar"), ("cg", "diag")]
)
@pytest.mark.parametrize("kernels", ["auto", "0"])
def test_gradcheck_ungated(method, lam_kind, kernels, small_groups, monkeypatch):
    """Input gate and initial state without a forget gate (the Woodbury case), and the plain ungated layer; with and
    without the compiled kernels."""
    monkeypatch.setenv(native.ENV_MODE, kernels)
    x = make_inputs(B=1, T=5, H=2, D=3, Dv=2, gated=False, lam_kind=lam_kind, init=True, seed=2)
    x["beta"] = 0.5 + 0.5 * torch.rand(1, 5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    kw = dict(chunk_size=2, output_final_state=True, **method_kwargs(method, torch.float64))
    leaves = [x[n].clone().requires_grad_() for n in ("q", "k", "v", "lam", "beta")]
    leaves += [s.clone().requires_grad_() for s in x["initial_state"]]

    def f(q, k, v, lam, beta, h0, g0):
        o, (h, g) = mesa_attention(q, k, v, lam, beta=beta, initial_state=(h0, g0), **kw)
        return o, h, g

    assert torch.autograd.gradcheck(f, leaves)
    if method == "woodbury":
        plain = [x[n].clone().requires_grad_() for n in ("q", "k", "v", "lam")]
        assert torch.autograd.gradcheck(lambda q, k, v, lam: mesa_attention(q, k, v, lam, chunk_size=2), plain)


def test_gradcheck_single_token():
    x = make_inputs(B=1, T=1, H=2, D=3, Dv=2, gated=True, init=True, seed=4)
    names = ["q", "k", "v", "lam", "gamma", "beta"]
    leaves = [x[n].clone().requires_grad_() for n in names] + [s.clone().requires_grad_() for s in x["initial_state"]]

    def f(q, k, v, lam, gamma, beta, h0, g0):
        o, (h, g) = mesa_attention(q, k, v, lam, gamma, beta, (h0, g0), output_final_state=True)
        return o, h, g

    assert torch.autograd.gradcheck(f, leaves)


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


@pytest.mark.parametrize("op", ["mesa", "linear"])
def test_strided_inputs(op, monkeypatch):
    """Inputs laid out (B, H, T, D) and transposed to (B, T, H, D), as attention code often passes them: outputs and
    gradients (which take the inputs' strides) equal those of contiguous copies, against the float64 reference.
    Groups of two chunks of 8: full groups are written through strided views, the ragged last one by copy."""
    from mesa_lm.ops import linear_attention, linear_attention_naive

    monkeypatch.setattr(chunking, "GROUP_TOKENS", 16)

    gen = torch.Generator().manual_seed(21)
    B, T, H, D = 2, 37, 3, 8

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    def gate() -> torch.Tensor:
        return (0.5 + 0.5 * torch.rand(B, H, T, generator=gen, dtype=torch.float64)).transpose(1, 2)

    q, k, v = (rnd(B, H, T, D).transpose(1, 2) for _ in range(3))
    inputs = [q, k / D**0.5, v] + ([0.5 + torch.rand(H, D, generator=gen, dtype=torch.float64), gate(), gate()]
                                   if op == "mesa" else [gate()])  # fmt: skip
    fast, ref = (mesa_attention, mesa_attention_naive) if op == "mesa" else (linear_attention, linear_attention_naive)
    strided = [x.detach().requires_grad_() for x in inputs]
    dense = [x.detach().contiguous().requires_grad_() for x in inputs]
    assert not strided[0].is_contiguous()
    w = rnd(B, T, H, D)
    o = fast(*strided, chunk_size=8)
    o_ref = ref(*dense)
    (o * w).sum().backward()
    (o_ref * w).sum().backward()
    assert rel_err(o, o_ref) <= 1e-10
    for a, b in zip(strided, dense):
        assert a.grad.shape == b.grad.shape and rel_err(a.grad, b.grad) <= 1e-10


@pytest.mark.parametrize("op", ["mesa", "linear"])
def test_a_gate_of_exactly_zero(op):
    """gamma = 0 (a float32 sigmoid of a logit below about -104) forgets everything before it, as in the reference:
    outputs and every gradient match it, except the zero gate's own gradient, which is 0 (none exists in log space)."""
    from mesa_lm.ops import linear_attention, linear_attention_naive

    x = make_inputs(T=16, gated=True, init=False, seed=8)
    x["gamma"][:, 5] = 0.0
    names = ["q", "k", "v", "lam", "gamma", "beta"] if op == "mesa" else ["q", "k", "v", "gamma"]
    fast, ref = (mesa_attention, mesa_attention_naive) if op == "mesa" else (linear_attention, linear_attention_naive)
    got = [x[n].clone().requires_grad_() for n in names]
    want = [x[n].clone().requires_grad_() for n in names]
    o, o_ref = fast(*got, chunk_size=8), ref(*want)
    assert rel_err(o, o_ref) <= 1e-10
    w = torch.randn_like(o)
    (o * w).sum().backward()
    (o_ref * w).sum().backward()
    zero = x["gamma"] == 0
    for n, a, b in zip(names, got, want):
        if n == "gamma":
            assert torch.equal(a.grad[zero], torch.zeros_like(a.grad[zero]))
            a, b = a.grad[~zero], b.grad[~zero]
        else:
            a, b = a.grad, b.grad
        assert rel_err(a, b) <= 1e-10, n
