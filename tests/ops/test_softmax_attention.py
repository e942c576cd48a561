"""softmax_attention against a plain masked-softmax reference."""

from __future__ import annotations

import pytest
import torch

from mesa_lm.ops import softmax_attention


def reference(q, k, v, mask, scale=None):
    """(B, Tq, H, D) layout; mask (B, 1 or H, Tq, Tk), True = may attend."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    p = s.masked_fill(~mask, float("-inf")).softmax(-1)
    return torch.einsum("bhqk,bkhe->bqhe", p, v)


def make(B=2, Tq=6, Tk=6, H=3, D=4, Dv=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    return r(B, Tq, H, D), r(B, Tk, H, D), r(B, Tk, H, Dv)


def test_causal():
    q, k, v = make()
    mask = torch.ones(6, 6, dtype=torch.bool).tril().expand(2, 1, 6, 6)
    o = softmax_attention(q, k, v)
    assert o.shape == (2, 6, 3, 5)
    torch.testing.assert_close(o, reference(q, k, v, mask), rtol=1e-12, atol=1e-12)
    o = softmax_attention(q, k, v, scale=0.3)
    torch.testing.assert_close(o, reference(q, k, v, mask, 0.3), rtol=1e-12, atol=1e-12)


def test_not_causal():
    q, k, v = make(Tq=3, Tk=7)
    mask = torch.ones(2, 1, 3, 7, dtype=torch.bool)
    o = softmax_attention(q, k, v, is_causal=False)
    torch.testing.assert_close(o, reference(q, k, v, mask), rtol=1e-12, atol=1e-12)


def test_causal_with_cache_aligns_bottom_right():
    q, k, v = make(Tq=3, Tk=7)
    mask = torch.ones(3, 7, dtype=torch.bool).tril(diagonal=4).expand(2, 1, 3, 7)
    torch.testing.assert_close(softmax_attention(q, k, v), reference(q, k, v, mask), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("heads_in_mask", [1, 3])
@pytest.mark.parametrize("Tq,Tk", [(6, 6), (3, 7)])
def test_explicit_mask(heads_in_mask, Tq, Tk):
    q, k, v = make(Tq=Tq, Tk=Tk, seed=1)
    gen = torch.Generator().manual_seed(2)
    mask = torch.rand(2, heads_in_mask, Tq, Tk, generator=gen) < 0.6
    mask[..., 0] = True  # every query sees at least one key
    o = softmax_attention(q, k, v, attention_mask=mask, is_causal=True)  # is_causal ignored with a mask
    torch.testing.assert_close(o, reference(q, k, v, mask), rtol=1e-12, atol=1e-12)


def test_bf16_runs():
    q, k, v = (t.bfloat16() for t in make())
    o = softmax_attention(q, k, v)
    assert o.dtype == torch.bfloat16 and torch.isfinite(o).all()
