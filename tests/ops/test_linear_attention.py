"""linear_attention (chunked, streamed over groups of chunks) against the step-by-step reference."""

from __future__ import annotations

import pytest
import torch

import mesa_lm.ops.chunking as chunking
from mesa_lm.ops import linear_attention, linear_attention_naive


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def make_inputs(
    B: int = 2,
    T: int = 11,
    H: int = 3,
    D: int = 4,
    Dv: int = 5,
    gated: bool = True,
    init: bool = True,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> dict:
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=dtype)

    out = dict(q=rnd(B, T, H, D), k=rnd(B, T, H, D) / D**0.5, v=rnd(B, T, H, Dv))
    out["gamma"] = 0.5 + 0.5 * torch.rand(B, T, H, generator=gen, dtype=dtype) if gated else None
    out["initial_state"] = rnd(B, H, Dv, D) if init else None
    return out


CASES = [
    # (T, chunk_size, gated, init, D, Dv)
    (11, 4, True, True, 4, 5),  # ragged last chunk
    (11, 4, False, False, 4, 5),
    (12, 4, True, False, 6, 3),
    (1, 4, True, True, 4, 5),  # T = 1
    (7, 5, False, True, 3, 3),
    (9, 64, True, True, 4, 2),
    (9, 1, True, False, 4, 2),
]


@pytest.fixture
def small_groups(monkeypatch):
    """Groups of two chunks, so the streamed forward and backward cross group boundaries even at small T."""
    monkeypatch.setattr(chunking, "GROUP_TOKENS", 8)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("T,C,gated,init,D,Dv", CASES)
def test_chunk_matches_naive(dtype, tol, T, C, gated, init, D, Dv, small_groups):
    x = make_inputs(T=T, D=D, Dv=Dv, gated=gated, init=init, dtype=dtype)
    o, s = linear_attention(**x, output_final_state=True, chunk_size=C)
    o_ref, s_ref = linear_attention_naive(**x, output_final_state=True)
    assert o.shape == (2, T, 3, Dv) and o.dtype == dtype and s.shape == (2, 3, Dv, D)
    assert rel_err(o, o_ref) <= tol
    assert rel_err(s, s_ref) <= tol
    assert torch.equal(linear_attention(**x, chunk_size=C), o)


def test_groups_are_sized_by_positions_and_entries():
    """At most GROUP_TOKENS positions and GROUP_ELEMENTS entries per (G, B, H, C, D) block, and at least one chunk."""
    def sizes(T: int, row: int) -> list[int]:
        return [s.stop - s.start for s in chunking.Groups(T, 64, torch.float32, row).slices]

    assert sizes(1024, 16 * 64) == [2] * 8  # 2^17 entries / (B H D = 1024) = 128 positions: two chunks of 64
    assert sizes(1024, 1) == [4] * 4  # the entries allow more: GROUP_TOKENS = 256 positions
    assert sizes(1000, 2**20) == [1] * 16  # less than a chunk's worth: one chunk per group (the last one ragged)
    # States are saved once per segment of about GROUP_TOKENS positions, however small the groups.
    assert chunking.Groups(1024, 64, torch.float32, 16 * 64).segments == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert chunking.Groups(1000, 64, torch.float32, 2**20).segments == [list(range(i, i + 4)) for i in range(0, 16, 4)]
    assert chunking.Groups(1000, 64, torch.float32, 1).segments == [[0], [1], [2], [3]]


@pytest.mark.parametrize("gated", [True, False])
def test_groups_cut_by_entries_match_naive(gated, monkeypatch):
    """Groups cut by the entries cap (one chunk of 4), two to a segment of GROUP_TOKENS = 8: outputs, final state and
    every gradient in float64, with one state saved per segment."""
    monkeypatch.setattr(chunking, "GROUP_TOKENS", 8)
    monkeypatch.setattr(chunking, "GROUP_ELEMENTS", 4 * 2 * 3 * 5)  # (B, H, Dv) = (2, 3, 5): one chunk of 4
    x = make_inputs(T=19, D=4, Dv=5, gated=gated, seed=3)
    grp = chunking.Groups(19, 4, torch.float64, 2 * 3 * 5)
    assert len(grp.slices) == 5 and grp.segments == [[0, 1], [2, 3], [4]]
    o = linear_attention(**{n: t.clone().requires_grad_() for n, t in x.items() if t is not None}, chunk_size=4)
    assert o.grad_fn.saved_tensors[-1].shape[0] == 3  # the checkpoints: one per segment
    gen = torch.Generator().manual_seed(4)
    w = (torch.randn(2, 19, 3, 5, generator=gen, dtype=torch.float64), torch.randn(2, 3, 5, 4, generator=gen,
                                                                                 dtype=torch.float64))

    def run(fn, **kw):
        leaves = {n: (t.clone().requires_grad_() if t is not None else None) for n, t in x.items()}
        o, s = fn(**leaves, output_final_state=True, **kw)
        grads = torch.autograd.grad((o * w[0]).sum() + (s * w[1]).sum(), [t for t in leaves.values() if t is not None])
        return [o, s, *grads]

    for a, b in zip(run(linear_attention, chunk_size=4), run(linear_attention_naive)):
        assert rel_err(a, b) <= 1e-10


def test_strong_decay_stays_finite():
    """Tiny gates make the within-chunk log-cumsum large; the masked exp must not overflow into nan."""
    x = make_inputs(T=20, init=True, dtype=torch.float32)
    x["gamma"] = torch.full_like(x["gamma"], 1e-3)
    o = linear_attention(**x, chunk_size=20)
    assert torch.isfinite(o).all()
    assert rel_err(o, linear_attention_naive(**x)) <= 1e-4


@pytest.mark.parametrize("T,C,gated,init,D,Dv", CASES)
def test_gradients_match_naive_float32(T, C, gated, init, D, Dv, small_groups):
    x = make_inputs(T=T, D=D, Dv=Dv, gated=gated, init=init, dtype=torch.float32, seed=7)
    gen = torch.Generator().manual_seed(8)
    w = (torch.randn(2, T, 3, Dv, generator=gen), torch.randn(2, 3, Dv, D, generator=gen))

    def grads(fn, **kw):
        leaves = {n: (t.clone().requires_grad_() if t is not None else None) for n, t in x.items()}
        o, s = fn(**leaves, output_final_state=True, **kw)
        loss = (o * w[0]).sum() + (s * w[1]).sum()
        return torch.autograd.grad(loss, [t for t in leaves.values() if t is not None])

    for a, b in zip(grads(linear_attention, chunk_size=C), grads(linear_attention_naive)):
        assert a.dtype == b.dtype and rel_err(a, b) <= 1e-3


@pytest.mark.parametrize("impl", ["chunk", "naive"])
def test_gradcheck(impl, small_groups):
    x = make_inputs(B=1, T=5, H=2, D=3, Dv=2, seed=1)
    leaves = [x[n].clone().requires_grad_() for n in ("q", "k", "v", "gamma", "initial_state")]

    def f(q, k, v, gamma, s0):
        if impl == "chunk":
            return linear_attention(q, k, v, gamma, s0, output_final_state=True, chunk_size=2)
        return linear_attention_naive(q, k, v, gamma, s0, output_final_state=True)

    assert torch.autograd.gradcheck(f, leaves)


def test_bf16_inputs():
    x32 = make_inputs(T=13, dtype=torch.float32, seed=5)
    o32, s32 = linear_attention(**x32, output_final_state=True, chunk_size=4)
    xb = {n: (t.bfloat16() if n != "initial_state" else t) for n, t in x32.items()}
    ob, sb = linear_attention(**xb, output_final_state=True, chunk_size=4)
    assert ob.dtype == torch.bfloat16 and sb.dtype == torch.float32
    assert torch.isfinite(ob).all() and torch.isfinite(sb).all()
    assert rel_err(ob, o32) <= 2e-2 and rel_err(sb, s32) <= 2e-2
