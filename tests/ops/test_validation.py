"""Every malformed input to the ops raises a one-line ValueError naming the argument."""

from __future__ import annotations

import pytest
import torch

from mesa_lm.ops import (
    linear_attention,
    linear_attention_naive,
    mesa_attention,
    mesa_attention_naive,
    softmax_attention,
)

B, T, H, D, Dv = 2, 5, 3, 4, 6


def mesa_args(**over) -> dict:
    args = dict(
        q=torch.randn(B, T, H, D),
        k=torch.randn(B, T, H, D),
        v=torch.randn(B, T, H, Dv),
        lam=torch.ones(H),
        gamma=torch.full((B, T, H), 0.9),
        beta=torch.full((B, T, H), 0.9),
        initial_state=(torch.zeros(B, H, D, D), torch.zeros(B, H, Dv, D)),
    )
    args.update(over)
    return args


def linear_args(**over) -> dict:
    args = dict(
        q=torch.randn(B, T, H, D),
        k=torch.randn(B, T, H, D),
        v=torch.randn(B, T, H, Dv),
        gamma=torch.full((B, T, H), 0.9),
        initial_state=torch.zeros(B, H, Dv, D),
    )
    args.update(over)
    return args


SHARED_BAD = [  # (override, regex the message must match); apply to mesa and linear alike
    (dict(q=torch.randn(B, T, H)), r"q has shape \(2, 5, 3\) \(3-D\); expected 4-D"),
    (dict(k=torch.randn(B, T, H, D, 1)), r"k has shape .* \(5-D\); expected 4-D"),
    (dict(k=torch.randn(B, T, H, D + 1)), r"k has shape \(2, 5, 3, 5\) but q has \(2, 5, 3, 4\); k must match q"),
    (dict(k=torch.randn(B, T + 1, H, D)), r"k must match q in \(B, T, H, D\)"),
    (dict(v=torch.randn(B + 1, T, H, Dv)), r"v has shape \(3, 5, 3, 6\) but q has .* v must match q in \(B, T, H\)"),
    (dict(v=torch.randn(B, T - 1, H, Dv)), r"v must match q in \(B, T, H\)"),
    (dict(v=torch.randn(B, T, H + 1, Dv)), r"v must match q in \(B, T, H\)"),
    (dict(q=torch.randn(B, 0, H, D), k=torch.randn(B, 0, H, D), v=torch.randn(B, 0, H, Dv)), r"T = 0"),
    (dict(q=torch.ones(B, T, H, D, dtype=torch.long)), r"q has dtype torch.int64; expected a floating dtype"),
    (dict(k=torch.randn(B, T, H, D, dtype=torch.float64)), r"k has dtype torch.float64 but q has torch.float32"),
    (dict(v=[[1.0]]), r"v must be a torch.Tensor, got list"),
    (dict(gamma=torch.full((B, T), 0.9)), r"gamma has shape \(2, 5\); expected \(B, T, H\) = \(2, 5, 3\)"),
    (dict(gamma=torch.full((B, T, H + 1), 0.9)), r"gamma has shape \(2, 5, 4\)"),
    (dict(gamma=torch.ones(B, T, H, dtype=torch.int32)), r"gamma has dtype torch.int32"),
    # The meta device stands in for a second device on a CPU-only machine.
    (dict(k=torch.randn(B, T, H, D, device="meta")), r"k is on meta but q is on cpu; all inputs must be on one device"),
    (dict(gamma=torch.ones(B, T, H, device="meta")), r"gamma is on meta but q is on cpu"),
]

MESA_BAD = SHARED_BAD + [
    (dict(lam=torch.ones(H + 1)), r"lam has shape \(4,\); expected \(H,\) = \(3,\) or \(H, D\) = \(3, 4\)"),
    (dict(lam=torch.ones(H, D + 1)), r"lam has shape \(3, 5\)"),
    (dict(lam=torch.ones(1, H, D)), r"lam has shape \(1, 3, 4\)"),
    (dict(lam=torch.tensor([1.0, 0.0, 2.0])), r"lam has min value 0; every entry must be > 0"),
    (dict(lam=-torch.ones(H, D)), r"lam has min value -1"),
    *[  # empty batch, heads or features: each position solves a D x D system
        (dict(q=torch.randn(*s), k=torch.randn(*s), v=torch.randn(*s[:3], Dv), lam=torch.ones(s[2]), gamma=None,
              beta=None, initial_state=None), r"B, H and D must all be at least 1")  # fmt: skip
        for s in ((0, T, H, D), (B, T, 0, D), (B, T, H, 0))
    ],
    (dict(lam=torch.ones(H, dtype=torch.long)), r"lam has dtype torch.int64"),
    (dict(lam=torch.ones(H, device="meta")), r"lam is on meta but q is on cpu"),
    (dict(beta=torch.full((T, H), 0.9)), r"beta has shape \(5, 3\); expected \(B, T, H\)"),
    (dict(initial_state=torch.zeros(B, H, D, D)), r"initial_state is Tensor; expected None or a pair \(H0, G0\)"),
    (dict(initial_state=(torch.zeros(B, H, D, D),)), r"expected None or a pair"),
    (
        dict(initial_state=(torch.zeros(B, H, D, Dv), torch.zeros(B, H, Dv, D))),
        r"initial_state\[0\] \(H0\) has shape \(2, 3, 4, 6\); expected \(B, H, D, D\) = \(2, 3, 4, 4\)",
    ),
    (
        dict(initial_state=(torch.zeros(B, H, D, D), torch.zeros(B, H, D, Dv))),
        r"initial_state\[1\] \(G0\) has shape \(2, 3, 4, 6\); expected \(B, H, Dv, D\) = \(2, 3, 6, 4\)",
    ),
    (
        dict(initial_state=(torch.zeros(B, H, D, D), torch.zeros(B, H, Dv, D, dtype=torch.long))),
        r"\(G0\) has dtype torch.int64",
    ),
]

LINEAR_BAD = SHARED_BAD + [
    (
        dict(initial_state=torch.zeros(B, H, D, Dv)),
        r"initial_state has shape \(2, 3, 4, 6\); expected \(B, H, Dv, D\) = \(2, 3, 6, 4\)",
    ),
    (dict(initial_state=(torch.zeros(B, H, Dv, D),)), r"initial_state must be a torch.Tensor, got tuple"),
    (dict(initial_state=torch.zeros(B, H, Dv, D, dtype=torch.long)), r"initial_state has dtype torch.int64"),
    (dict(initial_state=torch.zeros(B, H, Dv, D, device="meta")), r"initial_state is on meta but q is on cpu"),
]


def _raises(fn, args: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern) as info:
        fn(**args)
    msg = str(info.value)
    assert msg.startswith(fn.__name__ + ": ") and "\n" not in msg


@pytest.mark.parametrize("fn", [mesa_attention, mesa_attention_naive])
@pytest.mark.parametrize("over,pattern", MESA_BAD)
def test_mesa_rejects(fn, over, pattern):
    _raises(fn, mesa_args(**over), pattern)


@pytest.mark.parametrize("fn", [linear_attention, linear_attention_naive])
@pytest.mark.parametrize("over,pattern", LINEAR_BAD)
def test_linear_rejects(fn, over, pattern):
    _raises(fn, linear_args(**over), pattern)


@pytest.mark.parametrize("chunk_size", [0, -3, 2.0, True, None])
def test_bad_chunk_size(chunk_size):
    _raises(mesa_attention, mesa_args(chunk_size=chunk_size), r"chunk_size is .*; expected an int >= 1")
    _raises(linear_attention, linear_args(chunk_size=chunk_size), r"chunk_size is .*; expected an int >= 1")


@pytest.mark.parametrize("shape", [(0, T, H, D, Dv), (B, T, 0, D, Dv), (B, T, H, 0, 0), (B, T, H, D, 0)])
@pytest.mark.parametrize("gated", [False, True])
def test_linear_attention_takes_empty_sizes(shape, gated):
    """An empty batch, head or feature axis gives an empty (or zero) output, and backward runs, as in the reference."""
    b, t, h, d, dv = shape
    shapes = {"q": (b, t, h, d), "k": (b, t, h, d), "v": (b, t, h, dv)}
    x = {n: torch.randn(*s, requires_grad=True) for n, s in shapes.items()}
    gamma = torch.full((b, t, h), 0.9) if gated else None
    o = linear_attention(**x, gamma=gamma)
    assert torch.equal(o, linear_attention_naive(**x, gamma=gamma))
    o.sum().backward()
    assert all(x[n].grad.shape == x[n].shape for n in x)


def test_valid_inputs_pass():
    """The fixtures above are valid, so each failure is due to its one override; mixed state dtype is allowed."""
    mesa_attention(**mesa_args(initial_state=(torch.zeros(B, H, D, D, dtype=torch.float64), torch.zeros(B, H, Dv, D))))
    mesa_attention(**mesa_args(lam=torch.ones(H, D), gamma=None, beta=None, initial_state=None))
    mesa_attention_naive(**mesa_args())
    linear_attention(**linear_args())
    linear_attention_naive(**linear_args(gamma=None, initial_state=None))


SOFTMAX_BAD = [
    (dict(q=torch.randn(B, T, D)), r"q has shape \(2, 5, 4\) \(3-D\); expected 4-D"),
    (dict(k=torch.randn(B, T, H, D + 1)), r"k must match q in \(B, H, D\)"),
    (dict(k=torch.randn(B, T, H + 1, D)), r"k must match q in \(B, H, D\)"),
    (dict(v=torch.randn(B, T + 1, H, Dv)), r"v must match k in \(B, T, H\)"),
    (dict(v=torch.randn(B, T, H, Dv, dtype=torch.float64)), r"v has dtype torch.float64 but q has torch.float32"),
    (dict(attention_mask=torch.ones(B, 1, T, T)), r"attention_mask has dtype torch.float32; expected torch.bool"),
    (
        dict(attention_mask=torch.ones(B, 2, T, T, dtype=torch.bool)),
        r"attention_mask has shape \(2, 2, 5, 5\); expected \(B, 1 or H, Tq, Tk\)",
    ),
    (dict(attention_mask=torch.ones(B, 1, T, T + 1, dtype=torch.bool)), r"attention_mask has shape"),
    (dict(attention_mask=torch.ones(T, T, dtype=torch.bool)), r"attention_mask has shape \(5, 5\)"),
]


@pytest.mark.parametrize("over,pattern", SOFTMAX_BAD)
def test_softmax_rejects(over, pattern):
    args = dict(q=torch.randn(B, T, H, D), k=torch.randn(B, T, H, D), v=torch.randn(B, T, H, Dv))
    args.update(over)
    _raises(softmax_attention, args, pattern)
