"""The compiled chunk kernels of the mesa layer (`cpp_chunk_states.py`, `cpp_linear_chunks.py`) against the eager
`chunking` functions they replace, each kernel on its own and the whole op (outputs, final states and every gradient)
with them and without them (MESA_LM_NATIVE=0)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mesa_lm.ops.chunking as chunking
import mesa_lm.ops.mesa.chunk as chunk
import mesa_lm.ops.mesa.native as native
from mesa_lm.ops import mesa_attention
from mesa_lm.ops.chunking import Decay

from .test_mesa_attention import make_inputs, rel_err

pytestmark = pytest.mark.skipif(native.library() is None, reason="no C++ compiler: the kernels cannot be built")

TOL = {torch.float64: 1e-13, torch.float32: 2e-6}


def group(G=3, B=2, H=2, C=13, D=6, Dv=5, gated=True, beta=True, dtype=torch.float64, seed=0):
    """A group of chunks' inputs in the chunked layout (G, B, H, C, ...), gates spread over 30 orders of magnitude."""
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)  # noqa: E731
    k, v = F.normalize(rnd(G, B, H, C, D), dim=-1), rnd(G, B, H, C, Dv)
    gamma = torch.exp(-8 * torch.rand(G, B, H, C, generator=gen, dtype=dtype) ** 4) if gated else None
    if gated:
        gamma[0, 0, 0, :3] = 0.0  # a closed gate (taken as the smallest normal number)
        gamma[-1, -1, -1] = 1.0
    b = torch.rand(G, B, H, C, generator=gen, dtype=dtype) if beta else None
    a0 = rnd(B, H, D, D)
    h0, g0 = a0 @ a0.transpose(-1, -2) / D, rnd(B, H, Dv, D)
    return k, v, gamma, b, h0, g0


def scaled_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return rel_err(x, ref) if ref.abs().max() > 0 else float(x.abs().max())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("gated,beta", [(True, True), (True, False), (False, True), (False, False)])
@pytest.mark.parametrize("G,C,D,Dv", [(3, 13, 6, 5), (1, 1, 3, 3), (2, 64, 64, 64), (2, 8, 17, 33)])
def test_states_match_eager(dtype, gated, beta, G, C, D, Dv):
    """Decays (log-space, so the closed gate's underflow is the same), written keys and values, and the boundary
    states: the scan of `chunking.state_deltas`."""
    k, v, gamma, b, h0, g0 = group(G=G, C=C, D=D, Dv=Dv, gated=gated, beta=beta, dtype=dtype, seed=C + D)
    kb, vb, decay, hs, gs = native.chunk_states(k, v, gamma, b, h0, g0)
    ref = Decay.make(gamma, C, dtype, k.device)
    kb_ref = k if b is None else k * b[..., None]
    vb_ref = v if b is None else v * b[..., None]
    hs_ref = chunking.scan_states(chunking.state_deltas(k, kb_ref, ref.wlast), ref.alast, h0)
    gs_ref = chunking.scan_states(chunking.state_deltas(k, vb_ref, ref.wlast), ref.alast, g0)
    # The decays by log-space differences: float32 cumulative sums may differ in their last bit (the kernel sums in
    # double), which exp scales by |c_t| <= 8 C.
    tol = TOL[dtype] * (1 if dtype == torch.float64 else 8 * C)
    if gated:
        for x, r in zip(decay, (ref.a, ref.dec, ref.wlast, ref.alast)):
            assert x.shape == r.shape and ((x - r).abs() <= tol * r.abs() + torch.finfo(dtype).tiny).all()
    else:
        assert decay is None
    assert torch.equal(kb, kb_ref) and torch.equal(vb, vb_ref)
    assert scaled_err(hs, hs_ref) <= tol and scaled_err(gs, gs_ref) <= tol


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("G,C,D,Dv", [(3, 13, 6, 5), (1, 1, 3, 3), (2, 64, 64, 64), (2, 9, 17, 33)])
def test_read_out_and_query_grads_match_eager(dtype, gated, G, C, D, Dv):
    """The read-out o = a G_n x + (dec o x k^T) vb, and the backward's p_G and r = a G_n^T do + p_G k."""
    k, v, gamma, b, h0, g0 = group(G=G, C=C, D=D, Dv=Dv, gated=gated, dtype=dtype, seed=2 * C + D)
    _, vb, _, _, gs = native.chunk_states(k, v, gamma, b, h0, g0)
    d = Decay.make(gamma, C, dtype, k.device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(k.shape, generator=gen, dtype=dtype)
    dout = torch.randn(v.shape, generator=gen, dtype=dtype)
    ref = chunking.linear_forward_group(x, k, vb, gs[:-1], d.a, d.dec)
    assert rel_err(native.read_out(x, k, vb, gs[:-1], d.a, d.dec), ref) <= TOL[dtype]
    pg, r = native.query_grads(dout, vb, k, gs[:-1], d.a, d.dec)
    pg_ref = chunking.output_scores(dout, vb, d.dec)
    r_ref = chunking.query_grad_group(chunking.scale(dout, d.a), k, gs[:-1], pg_ref, None)
    assert rel_err(pg, pg_ref) <= TOL[dtype] and rel_err(r, r_ref) <= TOL[dtype]
    assert (pg.tril() == pg).all()  # causal: nothing above the diagonal


def run_op(monkeypatch, use_native: str, method: str, C: int, **kw):
    """Outputs, final states and all gradients of one mesa_attention call (with random output weights)."""
    monkeypatch.setenv(native.ENV_MODE, use_native)
    x = make_inputs(**kw)
    leaves = [x["q"], x["k"], x["v"], x["lam"], x["gamma"], x["beta"], *(x.get("initial_state") or ())]
    leaves = [t.requires_grad_() for t in leaves if t is not None]
    o, (h, g) = mesa_attention(**x, output_final_state=True, chunk_size=C, method=method)
    gen = torch.Generator().manual_seed(7)
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in (o, h, g))
    grads = torch.autograd.grad(loss, leaves)
    return [o, h, g, *grads]


@pytest.mark.parametrize(
    "method,gated,T,C,D,Dv,lam_kind,init",
    [
        ("cg_exact", True, 37, 8, 6, 5, "diag", True),
        ("cg_exact", True, 1, 8, 4, 4, "scalar", True),
        ("cholesky", True, 50, 13, 5, 7, "diag", False),
        ("cg", True, 64, 16, 16, 16, "scalar", True),
        ("woodbury", False, 45, 8, 6, 9, "diag", True),
        ("woodbury", False, 20, 64, 3, 3, "scalar", False),
    ],
)
def test_op_matches_eager(method, gated, T, C, D, Dv, lam_kind, init, monkeypatch):
    """The whole layer with the kernels against the eager path, float64: every output and gradient, over several
    groups and segments (small GROUP_TOKENS), ragged last chunks and T = 1; and the kernels did run."""
    monkeypatch.setattr(chunking, "GROUP_TOKENS", 2 * C)
    monkeypatch.setattr(chunking, "GROUP_ELEMENTS", 2 * C * 2 * 3 * max(D, Dv) // 2)  # groups of 1 chunk: segments of 2
    kw = dict(B=2, T=T, H=3, D=D, Dv=Dv, gated=gated, lam_kind=lam_kind, init=init, seed=T + C)
    eager = run_op(monkeypatch, "0", method, C, **kw)
    calls = []
    for name in ("chunk_states", "read_out", "query_grads", "chunk_backward"):
        fn = getattr(chunk, f"native_{name}")
        monkeypatch.setattr(chunk, f"native_{name}", lambda *a, _fn=fn, _n=name: calls.append(_n) or _fn(*a))
    compiled = run_op(monkeypatch, "1", method, C, **kw)
    assert set(calls) == {"chunk_states", "read_out", "query_grads", "chunk_backward"}
    for x, ref in zip(compiled, eager):
        assert scaled_err(x, ref) <= 1e-12


def test_op_float32_matches_eager(monkeypatch):
    """float32 at D = 64 (full register blocks, chunks of 64): within a few float32 ulps of the eager path relative to
    the largest entry, for the gated default and the ungated layer."""
    for gated, method in ((True, "cg_exact"), (False, "woodbury")):
        kw = dict(B=1, T=150, H=2, D=64, Dv=64, gated=gated, dtype=torch.float32, seed=3)
        eager = run_op(monkeypatch, "0", method, 64, **kw)
        compiled = run_op(monkeypatch, "1", method, 64, **kw)
        for x, ref in zip(compiled, eager):
            assert scaled_err(x, ref) <= 5e-5


def test_same_result_on_one_and_two_threads(monkeypatch):
    """Each chunk, or each (batch, head), runs on one thread with the same arithmetic: the result does not depend on
    the thread count, bit for bit."""
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(run_op(monkeypatch, "1", "cg_exact", 8, B=2, T=40, H=3, D=8, Dv=8, dtype=torch.float32))
    finally:
        torch.set_num_threads(threads)
    for x, y in zip(*outs):
        assert torch.equal(x, y)


def test_nan_initial_state_matches_eager(monkeypatch):
    """A NaN off the diagonal of H0 in one (batch, head): every output there is NaN with the kernels as without them,
    and the other (batch, head) pairs stay finite and equal."""
    outs = []
    for use_native in ("0", "1"):
        monkeypatch.setenv(native.ENV_MODE, use_native)
        x = make_inputs(B=2, T=20, H=2, D=4, Dv=3, gated=True, init=True, seed=21)
        x["initial_state"][0][1, 0, 2, 1] = float("nan")
        outs.append(mesa_attention(**x, chunk_size=8))
    eager, compiled = outs
    assert torch.equal(eager.isnan(), compiled.isnan()) and eager[1, :, 0].isnan().all()
    finite = ~eager.isnan()
    assert rel_err(compiled[finite], eager[finite]) <= 1e-12
