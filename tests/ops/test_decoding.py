"""Single-token decoding steps, multi-token continuation from a state, and bf16 autocast of the chunked ops."""

from __future__ import annotations

import pytest
import torch

from mesa_lm.ops import (
    linear_attention,
    linear_attention_naive,
    linear_attention_step,
    mesa_attention,
    mesa_attention_naive,
    mesa_attention_step,
)

from .test_mesa_attention import make_inputs, rel_err


def _time_slice(x: dict, t0: int, t1: int, state) -> dict:
    out = {n: (t[:, t0:t1] if n in ("q", "k", "v", "gamma", "beta") and t is not None else t) for n, t in x.items()}
    out["initial_state"] = state
    return out


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_mesa_steps_match_reference(gated, dtype, tol):
    """Prefill with the chunked op, then decode token by token with the step, then continue with several tokens."""
    x = make_inputs(T=12, gated=gated, init=True, dtype=dtype, seed=21)
    o_ref, st_ref = mesa_attention_naive(**x, output_final_state=True)
    o1, st = mesa_attention(**_time_slice(x, 0, 5, x["initial_state"]), output_final_state=True, chunk_size=4)
    outs = [o1]
    for t in range(5, 8):
        o, st = mesa_attention_step(**_time_slice(x, t, t + 1, st))
        assert o.shape == (2, 1, 3, 5) and o.dtype == dtype and st[0].dtype == dtype
        outs.append(o)
    o3, st = mesa_attention(**_time_slice(x, 8, 12, st), output_final_state=True, chunk_size=3)
    outs.append(o3)
    assert rel_err(torch.cat(outs, dim=1), o_ref) <= tol
    assert rel_err(st[0], st_ref[0]) <= tol and rel_err(st[1], st_ref[1]) <= tol


def test_mesa_step_without_state_and_errors():
    x = make_inputs(T=1, gated=True, init=False, seed=22)
    o, _ = mesa_attention_step(**x)
    assert rel_err(o, mesa_attention_naive(**x)) <= 1e-12
    x2 = make_inputs(T=2, seed=22)
    with pytest.raises(ValueError, match="exactly 1"):
        mesa_attention_step(**x2)


def test_mesa_step_gradcheck():
    x = make_inputs(B=1, T=1, H=2, D=3, Dv=2, gated=True, init=True, seed=23)
    names = ["q", "k", "v", "lam", "gamma", "beta"]
    leaves = [x[n].clone().requires_grad_() for n in names] + [s.clone().requires_grad_() for s in x["initial_state"]]

    def f(q, k, v, lam, gamma, beta, h0, g0):
        o, (h, g) = mesa_attention_step(q, k, v, lam, gamma, beta, (h0, g0))
        return o, h, g

    assert torch.autograd.gradcheck(f, leaves)


@pytest.mark.parametrize("gated", [False, True])
def test_linear_steps_match_reference(gated):
    x = make_inputs(T=10, gated=gated, init=True, seed=24)
    x = dict(q=x["q"], k=x["k"], v=x["v"], gamma=x["gamma"], initial_state=x["initial_state"][1])
    o_ref, s_ref = linear_attention_naive(**x, output_final_state=True)
    o1, s = linear_attention(**_time_slice(x, 0, 4, x["initial_state"]), output_final_state=True, chunk_size=3)
    outs = [o1]
    for t in range(4, 7):
        o, s = linear_attention_step(**_time_slice(x, t, t + 1, s))
        outs.append(o)
    o3, s = linear_attention(**_time_slice(x, 7, 10, s), output_final_state=True, chunk_size=2)
    outs.append(o3)
    assert rel_err(torch.cat(outs, dim=1), o_ref) <= 1e-10 and rel_err(s, s_ref) <= 1e-10
    with pytest.raises(ValueError, match="exactly 1"):
        linear_attention_step(**_time_slice(x, 0, 2, None))


@pytest.mark.parametrize("chunk", [16, 32])  # 32: CG on sub-chunks
@pytest.mark.parametrize("method", ["woodbury", "cholesky", "cg", "cg_exact"])
def test_mesa_bf16_autocast(method, chunk):
    """Under bf16 autocast the states and solves stay float32: finite, and within 2e-2 of float32, with gradients."""
    gated = method != "woodbury"
    x = make_inputs(T=40, D=8, Dv=8, gated=gated, init=False, dtype=torch.float32, seed=25)
    o32 = mesa_attention(**x, chunk_size=chunk, method=method)
    lin = torch.nn.Linear(8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, k, v = (lin(x[n]) for n in ("q", "k", "v"))  # bf16 activations, as in a model under autocast
        ob, (h, g) = mesa_attention(q, k, v, x["lam"], x["gamma"], x["beta"], output_final_state=True,
                                    chunk_size=chunk, method=method)  # fmt: skip
    with torch.no_grad():
        ref = mesa_attention(*(lin(x[n]) for n in ("q", "k", "v")), x["lam"], x["gamma"], x["beta"], chunk_size=chunk)
    assert ob.dtype == torch.bfloat16 and h.dtype == torch.float32 and g.dtype == torch.float32
    assert torch.isfinite(ob).all() and rel_err(ob, ref) <= 2e-2
    ob.float().square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in lin.parameters())
    assert torch.isfinite(o32).all()


def test_linear_bf16_autocast():
    x = make_inputs(T=40, D=8, Dv=8, gated=True, init=False, dtype=torch.float32, seed=26)
    lin = torch.nn.Linear(8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, k, v = (lin(x[n]) for n in ("q", "k", "v"))
        ob, s = linear_attention(q, k, v, x["gamma"], output_final_state=True, chunk_size=16)
    with torch.no_grad():
        ref = linear_attention(*(lin(x[n]) for n in ("q", "k", "v")), x["gamma"], chunk_size=16)
    assert ob.dtype == torch.bfloat16 and s.dtype == torch.float32
    assert torch.isfinite(ob).all() and rel_err(ob, ref) <= 2e-2
    ob.float().square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in lin.parameters())


@pytest.mark.parametrize("method", ["woodbury", "cholesky", "cg", "cg_exact"])
def test_mesa_saves_no_per_position_matrices(method):
    """The backward keeps O(T D) per head: x, the inputs, and states at group boundaries only (no T x D x D)."""
    B, T, H, D = 1, 512, 2, 16
    x = make_inputs(B=B, T=T, H=H, D=D, Dv=D, gated=method != "woodbury", init=False, dtype=torch.float32, seed=27)
    leaves = {n: (t.requires_grad_() if t is not None else None) for n, t in x.items()}
    o = mesa_attention(**leaves, chunk_size=16, method=method)
    saved = sum(t.numel() for t in o.grad_fn.saved_tensors if t is not None)
    inputs = sum(t.numel() for t in x.values() if t is not None)
    assert saved <= inputs + B * T * H * D + 4 * B * H * D * D  # inputs + x + a couple of (D, D) checkpoints
    assert saved < B * T * H * D * D / 2
